"""The edge agent: store, workerd config rendering, process supervision, HTTP API."""
