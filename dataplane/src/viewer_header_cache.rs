//! Per-worker cache of rendered viewer-certificate header blocks.
//!
//! Rendering the `CloudFront-Viewer-Cert-*` block means parsing the client's leaf certificate
//! a second time (BoringSSL parsed it to verify it) and formatting names, a fingerprint and
//! the PEM: about 20 µs. Clients reconnect with the same certificate, so each worker keeps
//! the blocks it rendered, keyed by the site and the SHA-256 of the leaf DER, and connections
//! share one copy. The cache is bounded by entries and by bytes (a passthrough site accepts
//! self-signed certificates from anyone, whose names can make one block tens of KiB); when
//! full it starts over (no per-entry bookkeeping on the hot path). It lives on one worker
//! thread: no locks.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use portcullis_config::{ForwardHeaders, MtlsMode};

use crate::tls::SiteTls;
use crate::viewer_cert::{render_headers, ViewerCertInfo};

/// Blocks kept per worker before the cache starts over.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Bytes of blocks kept per worker before the cache starts over.
pub const DEFAULT_CAPACITY_BYTES: usize = 8 << 20;

/// (site id, SHA-256 of the leaf DER).
type BlockKey = (u64, [u8; 32]);

/// Rendered header blocks by (site, leaf certificate).
#[derive(Debug)]
pub struct ViewerHeaderCache {
    blocks: RefCell<HashMap<BlockKey, Rc<[u8]>>>,
    capacity: usize,
    capacity_bytes: usize,
    bytes: Cell<usize>,
}

impl ViewerHeaderCache {
    /// An empty cache that holds at most `capacity` blocks and [`DEFAULT_CAPACITY_BYTES`].
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_CAPACITY_BYTES)
    }

    /// An empty cache that holds at most `capacity` blocks of `capacity_bytes` in all. A
    /// block larger than a sixteenth of `capacity_bytes` is rendered for its connection and
    /// not cached.
    pub fn with_limits(capacity: usize, capacity_bytes: usize) -> Self {
        Self {
            blocks: RefCell::new(HashMap::new()),
            capacity: capacity.max(1),
            capacity_bytes,
            bytes: Cell::new(0),
        }
    }

    /// Bytes of the blocks currently cached.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Blocks currently cached.
    pub fn len(&self) -> usize {
        self.blocks.borrow().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The header block `site` forwards for a client that presented `leaf_der` (None: no
    /// certificate). None when the certificate does not parse.
    pub fn block_for(&self, site: &SiteTls, leaf_der: Option<&[u8]>) -> Option<Rc<[u8]>> {
        let style = BlockStyle {
            site_id: site.id,
            forward: &site.config.mtls.forward,
            include_pem: site.policy.mode != MtlsMode::Passthrough,
        };
        self.block_with(&style, leaf_der)
    }

    /// [`Self::block_for`] with the site's settings spelled out.
    pub fn block_with(&self, style: &BlockStyle<'_>, leaf_der: Option<&[u8]>) -> Option<Rc<[u8]>> {
        let Some(der) = leaf_der else {
            return Some(render(style, None));
        };
        let key = (style.site_id, boring::sha::sha256(der));
        if let Some(block) = self.blocks.borrow().get(&key) {
            return Some(Rc::clone(block));
        }
        let info = ViewerCertInfo::from_der(der).ok()?;
        let block = render(style, Some(&info));
        if block.len() > self.capacity_bytes / 16 {
            return Some(block);
        }
        let mut blocks = self.blocks.borrow_mut();
        if blocks.len() >= self.capacity || self.bytes.get() + block.len() > self.capacity_bytes {
            blocks.clear();
            self.bytes.set(0);
        }
        self.bytes.set(self.bytes.get() + block.len());
        blocks.insert(key, Rc::clone(&block));
        Some(block)
    }
}

/// How a site renders its block: which headers, and whether the PEM is included.
#[derive(Debug, Clone, Copy)]
pub struct BlockStyle<'a> {
    /// [`SiteTls::id`] of the site (part of the cache key).
    pub site_id: u64,
    /// The headers the site forwards.
    pub forward: &'a ForwardHeaders,
    /// False in passthrough mode.
    pub include_pem: bool,
}

fn render(style: &BlockStyle<'_>, info: Option<&ViewerCertInfo>) -> Rc<[u8]> {
    let mut block = Vec::with_capacity(if info.is_some() { 2048 } else { 40 });
    render_headers(info, style.forward, style.include_pem, &mut block);
    block.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertSpec, Issued};

    fn leaf(cn: &str) -> Vec<u8> {
        let root =
            Issued::self_signed(CertSpec::new("Cache Root", CertKind::RootCa)).expect("root");
        root.issue(CertSpec::new(cn, CertKind::Client))
            .expect("client")
            .cert_der
    }

    fn style(site_id: u64, forward: &ForwardHeaders) -> BlockStyle<'_> {
        BlockStyle {
            site_id,
            forward,
            include_pem: true,
        }
    }

    #[test]
    fn same_certificate_and_site_share_one_block() {
        let cache = ViewerHeaderCache::new(16);
        let all = ForwardHeaders::default();
        let der = leaf("alice");
        let a = cache
            .block_with(&style(1, &all), Some(&der))
            .expect("block");
        let b = cache
            .block_with(&style(1, &all), Some(&der))
            .expect("block");
        assert!(
            Rc::ptr_eq(&a, &b),
            "second connection re-rendered the block"
        );
        let text = String::from_utf8_lossy(&a).into_owned();
        assert!(
            text.contains("CloudFront-Viewer-Cert-Subject: CN=alice\r\n"),
            "{text}"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn other_sites_and_certificates_get_their_own_block() {
        let cache = ViewerHeaderCache::new(16);
        let all = ForwardHeaders::default();
        let only_present = ForwardHeaders {
            serial_number: false,
            issuer: false,
            subject: false,
            present: true,
            sha256: false,
            validity: false,
            pem: false,
        };
        let der = leaf("alice");
        let full = cache
            .block_with(&style(1, &all), Some(&der))
            .expect("block");
        let small = cache
            .block_with(&style(2, &only_present), Some(&der))
            .expect("block");
        assert_eq!(&small[..], b"CloudFront-Viewer-Cert-Present: 1\r\n");
        assert_ne!(full, small);
        let bob = cache
            .block_with(&style(1, &all), Some(&leaf("bob")))
            .expect("block");
        assert!(String::from_utf8_lossy(&bob).contains("CN=bob"));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn no_certificate_and_garbage() {
        let cache = ViewerHeaderCache::new(16);
        let all = ForwardHeaders::default();
        let none = cache.block_with(&style(1, &all), None).expect("block");
        assert_eq!(&none[..], b"CloudFront-Viewer-Cert-Present: 0\r\n");
        assert!(cache
            .block_with(&style(1, &all), Some(b"not a certificate"))
            .is_none());
        assert!(
            cache.is_empty(),
            "failures and no-certificate blocks are not cached"
        );
    }

    #[test]
    fn large_blocks_are_bounded_by_bytes() {
        // A self-signed passthrough certificate with long names renders a large block.
        let big = |i: usize| {
            let name = format!("{i}-{}", "x".repeat(2000));
            let spec =
                CertSpec::new(&name, CertKind::RootCa).organizational_unit(&"y".repeat(2000));
            Issued::self_signed(spec).expect("cert").cert_der
        };
        let all = ForwardHeaders::default();
        let first = big(0);
        let probe = ViewerHeaderCache::new(16)
            .block_with(&style(1, &all), Some(&first))
            .expect("block");
        // Room for about four such blocks; each is within the per-block limit.
        let limit = probe.len() * 4 + probe.len() / 2;
        // Blocks differ by a few bytes (random serials and key sizes, two-digit names): the
        // roomy cache's per-block limit (a sixteenth) leaves a quarter of headroom over the
        // probe, so every block is kept.
        let roomy = probe.len() * 20;
        let cache = ViewerHeaderCache::with_limits(1000, roomy);
        let cache_small = ViewerHeaderCache::with_limits(1000, limit);
        for i in 0..12 {
            let der = big(i);
            cache
                .block_with(&style(1, &all), Some(&der))
                .expect("block");
            assert!(cache.bytes() <= roomy);
            cache_small
                .block_with(&style(1, &all), Some(&der))
                .expect("block");
            assert!(
                cache_small.bytes() <= limit,
                "{} > {limit}",
                cache_small.bytes()
            );
        }
        assert!(cache.len() > 1);
        assert!(
            cache_small.is_empty(),
            "blocks over a sixteenth of the budget are not kept"
        );
    }

    #[test]
    fn a_full_cache_starts_over_and_stays_bounded() {
        let cache = ViewerHeaderCache::new(2);
        let all = ForwardHeaders::default();
        for cn in ["a", "b", "c", "d", "e"] {
            cache
                .block_with(&style(1, &all), Some(&leaf(cn)))
                .expect("block");
            assert!(cache.len() <= 2);
        }
    }
}
