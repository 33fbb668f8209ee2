//! Generates the gRPC services etcd-client has no server traits for (see `proto/README.md`).
//! `protoc` is found through `PROTOC`, which `.cargo/config.toml` points at `scripts/protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // The etcd messages these services carry are etcd-client's own types, so a response
        // built for one service is the same Rust type as for every other.
        .extern_path(
            ".etcdserverpb.ResponseHeader",
            "::etcd_client::proto::PbResponseHeader",
        )
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(
            &[
                "proto/v3election.proto",
                "proto/v3lock.proto",
                "proto/health.proto",
                "proto/auth.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
