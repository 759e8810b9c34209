"""Durable mode: deliveries and requests kept in a store, resumed after a crash."""
