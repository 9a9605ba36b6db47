"""task-api: the GraphQL service that records task progress and submits tasks to RabbitMQ."""

#: The release, as the images are tagged (metric ``task_api_build_info``).
__version__ = "0.1.0"
