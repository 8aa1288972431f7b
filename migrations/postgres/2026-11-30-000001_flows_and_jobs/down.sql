DROP TABLE job_claims;
DROP INDEX import_flows_element_period;
DROP TABLE import_flows;
