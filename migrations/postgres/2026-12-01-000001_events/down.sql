DROP TRIGGER events_notify ON events;
DROP TRIGGER ledger_entries_notify ON ledger_entries;
DROP FUNCTION reserve_notify_events();
DROP TABLE event_tickets;
DROP TABLE events;
