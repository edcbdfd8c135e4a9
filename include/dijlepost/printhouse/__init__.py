"""The paper path: print batches and their delivery to the print house over SFTP."""
