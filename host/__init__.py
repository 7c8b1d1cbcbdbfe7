"""The host side of a running accelerator: the driver over a register-and-memory transport."""
