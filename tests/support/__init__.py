"""Test support: real infrastructure (Kafka, PostgreSQL), isolated stacks and service processes."""
