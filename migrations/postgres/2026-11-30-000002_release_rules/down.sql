DROP INDEX release_orders_rule;
DROP TABLE rule_evaluations;
DROP TABLE release_rule_history;
DROP TABLE release_rules;
