"""email-service: a worker that sends templated emails through SMTP or into an outbox folder."""
