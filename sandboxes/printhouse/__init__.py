"""A stand-in print house: an SFTP server (asyncssh) and the print house's side of the protocol
(`simulator.process_inbox`), for the demo, the tests and the benchmarks."""
