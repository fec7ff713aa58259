DROP TABLE endpoint_slots;
DROP TABLE endpoint_rates;
