"""Domain services between the REST API / agent link and the database."""
