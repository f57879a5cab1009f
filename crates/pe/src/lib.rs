//! PE and TLS facts from a byte view in file or loaded layout. Pure parsing: never reads a file.
