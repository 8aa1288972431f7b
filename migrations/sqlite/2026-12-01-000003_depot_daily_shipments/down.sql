DROP TABLE depot_daily_shipments;
