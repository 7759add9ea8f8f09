"""scripts/build-image's OCI writer: one code path for sidekill's three images.

    python3 scripts/build-image.py --version V --commit C --epoch SECONDS
        [--ca-bundle FILE] [--policy-info FILE] --image KIND NAME BINARY FILE ...

KIND is controller, nop or quitter; NAME the image's NAME:TAG; BINARY the static executable;
FILE the tarball to write (ending in .tar). The controller needs --ca-bundle; the nop and the
quitter --policy-info, the policy's own `sidekill_policy_info` answer, from which nopPaths,
nopPathEnv and quitterPath are read: no second copy of those lists lives here. What differs
between the images is in `image_files` and `image_config`; the layer, config, manifest, index
and archive are written by the same functions for all three.

For each image: writes FILE (an OCI image layout, oci-layout + index.json + blobs/sha256, that
also carries Docker's manifest.json) and FILE minus `.tar` plus `.digest` (the manifest's
digest), and prints `NAME DIGEST SIZE` on stdout. Reproducible: tar entries sorted, uid/gid 0,
mtime the epoch; gzip without name or time; JSON with sorted keys and no spaces.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import time

# The user every image runs as ("nonroot", 65532, as distroless names it), so that
# `runAsNonRoot: true` admits each image without a runAsUser.
PASSWD = b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = b"root:x:0:\nnonroot:x:65532:\n"
USER = "65532:65532"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def tar_bytes(entries, epoch):
    """A tar of entries (path, mode, content), sorted by path, uid/gid 0, mtime epoch.

    content is bytes (a file), None (a folder, path ending in /) or ("link", TARGET) (a hard
    link to the file TARGET, which sorts before it: a reader must meet the target first)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, mode, data in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, tuple):
                info.type, info.linkname = tarfile.LNKTYPE, data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def with_parents(entries):
    """The entries plus a 0755 folder entry for every parent folder none of them names."""
    named = {path.rstrip("/") for path, _, _ in entries}
    folders = set()
    for path, _, _ in entries:
        parts = path.rstrip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add("/".join(parts[:i]))
    return entries + [(f + "/", 0o755, None) for f in sorted(folders - named)]


def same_file_at(paths, data, mode=0o755):
    """data at every path (absolute, from the policy): the first in the tar's order holds the
    bytes, the others are hard links to it. Each path is a real file to the runtime (not a
    symlink), and the layer stores the bytes once (gzip's 32 KiB window would not find a
    second copy of a 500 KiB binary)."""
    rel = sorted(p.lstrip("/") for p in paths)
    if len(set(rel)) != len(rel) or not all(p and not p.endswith("/") for p in rel):
        sys.exit(f"build-image: the paths {paths} are not distinct file paths")
    return [(rel[0], mode, data)] + [(p, mode, ("link", rel[0])) for p in rel[1:]]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def policy_info(image):
    answer = json.loads(read(image["policy_info"]))
    if "ok" not in answer:
        sys.exit(f"build-image: sidekill_policy_info answered {answer}")
    return answer["ok"]


def image_files(image):
    """The layer's files beyond the common ones (/etc/passwd, /etc/group, /dev, /proc, /tmp)."""
    exe = read(image["binary"])
    if image["kind"] == "controller":
        return [
            ("etc/ssl/certs/ca-certificates.crt", 0o644, read(image["ca_bundle"])),
            ("sidekill", 0o755, exe),
        ]
    info = policy_info(image)
    if image["kind"] == "nop":
        return same_file_at(info["nopPaths"], exe)
    return [(info["quitterPath"].lstrip("/"), 0o755, exe)]


def image_config(image):
    """The kind's part of the image config (ENTRYPOINT, Env, ports) and its labels."""
    if image["kind"] == "controller":
        return ({"Entrypoint": ["/sidekill"], "ExposedPorts": {"8080/tcp": {}}},
                "sidekill", "Stops undeclared sidecars of Kubernetes batch pods")
    info = policy_info(image)
    if image["kind"] == "nop":
        # The ENTRYPOINT is nopPaths[0]; PATH is what a bare `command[0]` is looked up in
        # when the swapped container sets none (the policy's prediction assumes it).
        return ({"Entrypoint": [info["nopPaths"][0]], "Env": ["PATH=" + info["nopPathEnv"]]},
                "sidekill-nop",
                "sidekill's nop: swapped in for a sidecar's image, exits 0 whatever its command")
    return ({"Entrypoint": [info["quitterPath"]]}, "sidekill-quitter",
            "sidekill's ephemeral quitter: a loopback quit request or a signal from inside the pod")


def gzip_bytes(data):
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as g:
        g.write(data)
    return gz.getvalue()


def containerd_name(name):
    """docker.io/library/NAME for a bare name, docker.io/NAME for USER/NAME, else NAME."""
    first = name.rsplit(":", 1)[0].split("/")[0]
    if "/" in name.rsplit(":", 1)[0] and ("." in first or ":" in first or first == "localhost"):
        return name
    return ("docker.io/library/" if "/" not in name.rsplit(":", 1)[0] else "docker.io/") + name


def write_image(image, version, commit, epoch):
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    name = image["name"]
    files = image_files(image)
    layer_tar = tar_bytes(with_parents([
        ("dev/", 0o755, None), ("proc/", 0o755, None), ("tmp/", 0o1777, None),
        ("etc/passwd", 0o644, PASSWD), ("etc/group", 0o644, GROUP),
    ] + files), epoch)
    layer = gzip_bytes(layer_tar)
    own, title, description = image_config(image)
    config = canonical({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": dict(own, User=USER, WorkingDir="/", Labels={
            "org.opencontainers.image.title": title,
            "org.opencontainers.image.description": description,
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.revision": commit,
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.created": created,
        }),
        "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        "history": [{"created": created,
                     "created_by": f"scripts/build-image ({title} {version}, {commit})"}],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer), "size": len(layer)}],
        "annotations": {"org.opencontainers.image.created": created},
    })
    index = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(manifest), "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            # ref.name: the tag (umoci, skopeo, podman's oci-archive); containerd's full
            # name (ctr import, kind load image-archive).
            "annotations": {"org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                            "io.containerd.image.name": containerd_name(name)},
        }],
    })

    def blob(d):
        return "blobs/sha256/" + d.split(":", 1)[1]

    docker_manifest = json.dumps([{
        "Config": blob(digest(config)), "RepoTags": [name], "Layers": [blob(digest(layer))],
    }], separators=(",", ":")).encode()
    archive = tar_bytes([
        ("blobs/", 0o755, None), ("blobs/sha256/", 0o755, None),
        (blob(digest(config)), 0o644, config), (blob(digest(layer)), 0o644, layer),
        (blob(digest(manifest)), 0o644, manifest),
        ("oci-layout", 0o644, b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", 0o644, index), ("manifest.json", 0o644, docker_manifest),
    ], epoch)
    path = image["file"]
    with open(path + ".tmp", "wb") as f:
        f.write(archive)
    os.replace(path + ".tmp", path)
    with open(path[:-len(".tar")] + ".digest", "w") as f:
        f.write(digest(manifest) + "\n")
    print(f"build-image: {path}: {len(archive)} bytes (layer {len(layer)} gzipped, "
          f"{len(layer_tar)} as tar, binary {os.path.getsize(image['binary'])}), "
          f"config {digest(config)}", file=sys.stderr)
    print(name, digest(manifest), len(archive))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--epoch", required=True, type=int)
    parser.add_argument("--ca-bundle")
    parser.add_argument("--policy-info")
    parser.add_argument("--image", nargs=4, action="append", required=True,
                        metavar=("KIND", "NAME", "BINARY", "FILE"))
    args = parser.parse_args()
    for kind, name, binary, path in args.image:
        if kind not in ("controller", "nop", "quitter") or not path.endswith(".tar"):
            parser.error(f"--image {kind} ... {path}: KIND controller, nop or quitter, FILE X.tar")
        needs = "ca_bundle" if kind == "controller" else "policy_info"
        if not getattr(args, needs):
            parser.error(f"--image {kind} needs --" + needs.replace("_", "-"))
        image = {"kind": kind, "name": name, "binary": binary, "file": path,
                 "ca_bundle": args.ca_bundle, "policy_info": args.policy_info}
        write_image(image, args.version, args.commit, args.epoch)


if __name__ == "__main__":
    main()
