"""Azure Table Storage and Storage Queues: typed repositories and a queue sender."""
