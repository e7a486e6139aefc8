"""The control plane: the Jupyter server extension, REST, signaling and tokens."""
