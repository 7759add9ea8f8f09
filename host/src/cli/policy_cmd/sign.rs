//! `sidekill policy keygen | sign | verify`: module signatures (see `crate::signature`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::error_value;
use crate::cli::{read_module, Context, Exit};
use crate::digest::Sha256;
use crate::error::{Error, Result};
use crate::signature::SignatureError;

/// `sidekill policy keygen | sign | verify`: module signatures (see `crate::signature`).
#[derive(Debug, Subcommand)]
pub enum SignCommand {
    /// Make an ECDSA P-256 key pair: PREFIX.key (PKCS#8 PEM) and PREFIX.pub
    #[command(long_about = "\
Make an ECDSA P-256 key pair, the kind `cosign generate-key-pair` makes: PREFIX.key, the
private key as unencrypted PKCS#8 PEM (mode 0600: keep it out of the cluster), and
PREFIX.pub, the public key as SubjectPublicKeyInfo PEM, which the controller trusts with
--trusted-key (mounted from a Secret). Existing files are not overwritten.")]
    Keygen {
        /// Where to write PREFIX.key and PREFIX.pub
        #[arg(long, value_name = "PREFIX", default_value = "sidekill-policy")]
        out: PathBuf,
    },

    /// Sign a module: writes X.wasm.sig (base64 ECDSA P-256/SHA-256, as cosign)
    #[command(long_about = "\
Sign a module with a PKCS#8 PEM private key (ECDSA P-256 or Ed25519; from `sidekill policy
keygen` or `openssl genpkey`). The signature is base64 of the ASN.1 DER ECDSA signature
over the module's bytes with SHA-256, the format of `cosign sign-blob`, so `cosign
verify-blob --key PREFIX.pub --signature X.wasm.sig --insecure-ignore-tlog=true X.wasm`
accepts it. cosign's own encrypted private keys are not read: sign with cosign itself
then (its signatures verify here).")]
    Sign {
        /// The module
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
        /// The private key (PKCS#8 PEM)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the signature [default: X.wasm.sig]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },

    /// Check a module's signature with public keys, as the controller will
    #[command(long_about = "\
Check a module's signature (base64, X.wasm.sig by default; `cosign sign-blob` output
works) with one or more public keys (SubjectPublicKeyInfo PEM: `sidekill policy keygen`,
`cosign generate-key-pair`). Exit code 0 when a key verifies it, 1 when none does, 2 when
a file cannot be read.")]
    Verify {
        /// The module
        #[arg(value_name = "X.wasm")]
        module: PathBuf,
        /// A trusted public key (PEM; repeatable)
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// The signature [default: X.wasm.sig]
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
    },
}

/// `sidekill policy keygen --out PREFIX`: writes `PREFIX.key` (PKCS#8 PEM, mode 0600) and
/// `PREFIX.pub` (SubjectPublicKeyInfo PEM), ECDSA P-256 as cosign's keys.
pub(super) fn keygen(ctx: &mut Context<'_>, prefix: &Path) -> Result<Exit> {
    let (key, pem) = crate::signature::SigningKey::generate()?;
    let (private, public) = (with_suffix(prefix, ".key"), with_suffix(prefix, ".pub"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&private)
        .and_then(|mut f| std::io::Write::write_all(&mut f, pem.as_bytes()))
        .map_err(|e| Error::io(&private, e))?;
    std::fs::write(&public, key.public().to_pem()).map_err(|e| Error::io(&public, e))?;
    let out = json!({
        "privateKey": private.display().to_string(),
        "publicKey": public.display().to_string(),
        "algorithm": key.public().algorithm().as_str(),
        "fingerprint": key.public().fingerprint(),
    });
    if ctx.json {
        ctx.json_out(&out)?;
    } else {
        let text = format!(
            "{} wrote {} (keep it secret) and {} ({}, fingerprint {})\n",
            ctx.style.green("ok:"),
            private.display(),
            public.display(),
            key.public().algorithm().as_str(),
            key.public().fingerprint()
        );
        ctx.print(&text)?;
    }
    Ok(Exit::Ok)
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// `sidekill policy sign X.wasm --key KEY [--out X.wasm.sig]`.
pub(super) fn sign(
    ctx: &mut Context<'_>,
    module: &Path,
    key: &Path,
    out: Option<&Path>,
) -> Result<Exit> {
    let bytes = read_module(module)?;
    let key = crate::signature::SigningKey::from_file(key)?;
    let signature = key.sign(&bytes)?;
    let out = out.map_or_else(
        || crate::source::file::signature_path(module),
        Path::to_path_buf,
    );
    std::fs::write(&out, &signature).map_err(|e| Error::io(&out, e))?;
    let sha256 = Sha256::of(&bytes);
    if ctx.json {
        ctx.json_out(&json!({
            "file": module.display().to_string(),
            "sha256": sha256.to_string(),
            "signature": out.display().to_string(),
            "key": key.public().fingerprint(),
        }))?;
    } else {
        let text = format!(
            "{} signed {} (sha256 {}) with key {}: {}\n",
            ctx.style.green("ok:"),
            module.display(),
            sha256,
            key.public().fingerprint(),
            out.display()
        );
        ctx.print(&text)?;
    }
    Ok(Exit::Ok)
}

/// `sidekill policy verify X.wasm --key PUB... [--signature X.wasm.sig]`: exit 0 when a
/// key verifies the signature, 1 when none does.
pub(super) fn verify(
    ctx: &mut Context<'_>,
    module: &Path,
    keys: &[std::path::PathBuf],
    signature: Option<&Path>,
) -> Result<Exit> {
    let bytes = read_module(module)?;
    let keys = keys
        .iter()
        .map(|k| crate::signature::PublicKey::from_file(k))
        .collect::<Result<Vec<_>>>()?;
    let sig_path = signature.map_or_else(
        || crate::source::file::signature_path(module),
        Path::to_path_buf,
    );
    let text = crate::limits::read_capped(&sig_path, 64 << 10)?;
    let raw =
        crate::signature::decode_signature(&text, &format!("signature {}", sig_path.display()))?;
    let trust = crate::signature::Trust {
        keys,
        ..crate::signature::Trust::default()
    };
    let sha256 = Sha256::of(&bytes);
    // The embedded module's bytes are trusted by the store, but `verify` checks the
    // signature itself: it answers "is this signature good", whatever the module.
    let verdict = trust
        .keys
        .iter()
        .find(|k| k.verifies(&bytes, &raw))
        .map(|k| k.fingerprint())
        .ok_or(Error::from(SignatureError::BadSignature {
            sha256: sha256.to_string(),
            keys: trust.keys.len(),
        }));
    let exit = Exit::ok_or_report(verdict.is_ok());
    if ctx.json {
        let mut out = json!({
            "file": module.display().to_string(),
            "sha256": sha256.to_string(),
            "signature": sig_path.display().to_string(),
            "verified": verdict.is_ok(),
        });
        match &verdict {
            Ok(key) => out["key"] = json!(key),
            Err(e) => out["error"] = error_value(e),
        }
        ctx.json_out(&out)?;
    } else {
        let text = match &verdict {
            Ok(key) => format!(
                "{} {} (sha256 {}) is signed by key {key}\n",
                ctx.style.green("verified:"),
                module.display(),
                sha256
            ),
            Err(e) => format!("{} {} ({})\n", ctx.style.red("refused:"), e, e.name()),
        };
        ctx.print(&text)?;
    }
    Ok(exit)
}
