//! Checks over any memory source: TLS, header, hollowing and pre-entry findings.
