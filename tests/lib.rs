//! hermes-tests: the process-level test suite lives in `it/` as one test binary. It starts the
//! real `hermes` binary (build it first: `cargo build -p hermes-node`) and, where a test
//! compares behaviour, Debian's real `etcd`.
