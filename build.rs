//! Compiles `proto/identity/v1` without a system `protoc` (protox), generates
//! the tonic/prost code from the same descriptor set, writes the descriptor set
//! for server reflection, and writes the RPC → permission table read from each
//! method's `(identity.v1.auth)` option. A method without the option fails the
//! build: the proto is the only place a permission is written down.

use std::{env, fmt::Write as _, fs, path::PathBuf};

use prost_reflect::{DynamicMessage, Value};

const PROTO_FILES: &[&str] = &[
    "identity/v1/common.proto",
    "identity/v1/tenant.proto",
    "identity/v1/user.proto",
    "identity/v1/role.proto",
    "identity/v1/group.proto",
    "identity/v1/device.proto",
    "identity/v1/auth.proto",
    "identity/v1/permission.proto",
    "identity/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTO_FILES)?;

    fs::write(
        out_dir.join("identity_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    fs::write(out_dir.join("rpc_rules.rs"), rpc_rules(&compiler.descriptor_pool())?)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        // prost's, save that a message that does not decode is
        // INVALID_ARGUMENT naming its field (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::Codec")
        .skip_protoc_run()
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Renders `rule_for(path)`, a match over every identity.v1 method path.
fn rpc_rules(pool: &prost_reflect::DescriptorPool) -> Result<String, Box<dyn std::error::Error>> {
    let extension = pool
        .get_extension_by_name("identity.v1.auth")
        .ok_or("extension identity.v1.auth is not defined")?;
    let mut arms = String::new();
    let mut missing = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == "identity.v1") {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&extension) {
                missing.push(method.full_name().to_owned());
                continue;
            }
            let rule = options.get_extension(&extension);
            let rule = rule.as_message().ok_or("auth option is not a message")?;
            writeln!(
                arms,
                "        \"/{0}/{1}\" => Some(&RpcRule {{ rpc: \"{0}/{1}\", permission: {2:?}, allow_self: {3}, public: {4} }}),",
                service.full_name(),
                method.name(),
                string_field(rule, "permission"),
                bool_field(rule, "allow_self"),
                bool_field(rule, "public"),
            )?;
        }
    }
    if !missing.is_empty() {
        return Err(format!("RPCs without an (identity.v1.auth) option: {}", missing.join(", ")).into());
    }
    Ok(format!(
        "/// The authorization rule of an identity.v1 RPC path, from its proto option.\n\
         pub fn rule_for(path: &str) -> Option<&'static RpcRule> {{\n    match path {{\n{arms}        _ => None,\n    }}\n}}\n"
    ))
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    match message.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn bool_field(message: &DynamicMessage, name: &str) -> bool {
    matches!(message.get_field_by_name(name).as_deref(), Some(Value::Bool(true)))
}
