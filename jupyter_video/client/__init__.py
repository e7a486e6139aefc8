"""Python participants: join rooms from a kernel or a script."""
