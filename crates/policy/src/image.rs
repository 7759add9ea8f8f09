//! Reading an image reference's tag: the variant (`-alpine`, `-distroless`) and, where the
//! software tags its images by release, the version.

/// The tag of an image reference, empty when it has none (`repo@sha256:...` or a bare name).
pub fn tag(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_segment.split_once(':').map_or("", |(_, t)| t)
}

/// A release version read from the start of a tag: `2.20.0`, `v2.20.0-alpine` or `2.16`
/// (a missing patch is 0). `None` for `latest`, `2` (a floating major) or anything else.
pub fn version(tag: &str) -> Option<(u32, u32, u32)> {
    let text = tag.strip_prefix('v').unwrap_or(tag);
    let numbers = text.split(['-', '+']).next()?;
    let mut parts = numbers.split('.');
    let major = parts.next()?.parse().ok()?;
    // A major alone floats across releases: it does not tell which features exist.
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_ignore_registry_ports_and_digests() {
        assert_eq!(tag("localhost:5000/proxy:1.2.3"), "1.2.3");
        assert_eq!(tag("gcr.io/x/proxy@sha256:abcd"), "");
        assert_eq!(tag("gcr.io/x/proxy:2.20.0@sha256:abcd"), "2.20.0");
        assert_eq!(tag("busybox"), "");
    }

    #[test]
    fn versions_need_a_minor() {
        assert_eq!(version("2.20.0-alpine"), Some((2, 20, 0)));
        assert_eq!(version("v2.19.1"), Some((2, 19, 1)));
        assert_eq!(version("2.16"), Some((2, 16, 0)));
        assert_eq!(version("2"), None);
        assert_eq!(version("latest"), None);
    }
}
