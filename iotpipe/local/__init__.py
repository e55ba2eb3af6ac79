"""Running the pipeline locally: the embedded emulator, its launcher, the supervisor of `iotpipe up`,
ports and the local model server."""
