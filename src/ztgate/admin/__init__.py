"""The admin API: the audit chain, its checkpoints and the recorded sessions over HTTP, for
operators' tools. Same tokens as the data path; a configured admin group to get in."""
