DROP TABLE event_tickets;
DROP INDEX events_subject;
DROP INDEX events_staged;
DROP INDEX events_position;
DROP TABLE events;
