"""task-api: the GraphQL service that records task progress and submits tasks to RabbitMQ."""
