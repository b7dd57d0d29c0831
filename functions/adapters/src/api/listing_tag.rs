//! The ETag of an alert listing, so that an open Alerts page polling every 2 s costs one small
//! read (the store's [`alerts_version`]) while nothing changed, not a read of every alert.
//!
//! A listing reads differently when the store's version moves (config changes, resets,
//! acknowledgements, firings), when time passes an active cooldown's end (the state turns
//! inactive with no write), or for another reader (a principal sees only the projects it may
//! read; MLRun's client gets its own rendering). The tag carries all three, so the server
//! keeps nothing per client:
//!
//! `W/"{version}.{issued}.{until}.{reader}"`: the store's version, when the tag was issued
//! and until when the listing holds by itself (µs, 0: no end), and a hash of who asked for
//! what.
//!
//! [`alerts_version`]: tocsin_core::store::AlertStore::alerts_version

use tocsin_core::model::{Span, Timestamp};

/// A tag is trusted at most this long. DynamoDB's version moves when a firing takes its
/// activation id, just before the firing commits: a listing read in between carries the new
/// version with the old content, and this bounds how long it is answered "not modified".
pub const MAX_AGE: Span = Span(30_000_000);

/// A listing's ETag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingTag {
    pub version: String,
    pub issued: Timestamp,
    /// When the listing changes by itself (see `AlertRecord::changes_by_itself_at`).
    pub until: Option<Timestamp>,
    pub reader: u64,
}

/// Who asked for what, as the tag holds it: the parts are hashed, not kept.
pub fn reader(parts: &[&str]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(parts.join("\0").as_bytes())
}

impl ListingTag {
    /// The header value.
    pub fn render(&self) -> String {
        format!(
            "W/\"{}.{}.{}.{:x}\"",
            self.version,
            self.issued.0,
            self.until.map_or(0, |t| t.0),
            self.reader
        )
    }

    /// A tag from an `If-None-Match` value; None for anything this server did not issue
    /// (a list of tags, `*`, another format): the listing is then answered in full.
    pub fn parse(header: &str) -> Option<Self> {
        let inner = header.trim().strip_prefix("W/\"")?.strip_suffix('"')?;
        let mut parts = inner.rsplitn(4, '.');
        let reader = u64::from_str_radix(parts.next()?, 16).ok()?;
        let until: i64 = parts.next()?.parse().ok()?;
        let issued: i64 = parts.next()?.parse().ok()?;
        let version = parts.next()?.to_owned();
        Some(ListingTag {
            version,
            issued: Timestamp(issued),
            until: (until != 0).then_some(Timestamp(until)),
            reader,
        })
    }

    /// Whether a client holding this tag holds what the listing would answer at `now`.
    pub fn still_holds(&self, version: &str, reader: u64, now: Timestamp) -> bool {
        self.version == version
            && self.reader == reader
            && self.until.is_none_or(|u| now < u)
            && now >= self.issued
            && now.0 - self.issued.0 < MAX_AGE.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(until: Option<i64>) -> ListingTag {
        ListingTag {
            version: "3-17".into(),
            issued: Timestamp::from_secs(1000),
            until: until.map(Timestamp::from_secs),
            reader: reader(&["ann", "*"]),
        }
    }

    #[test]
    fn a_tag_round_trips_and_foreign_ones_are_not_read() {
        for t in [tag(None), tag(Some(1010))] {
            assert_eq!(ListingTag::parse(&t.render()), Some(t.clone()));
        }
        let dotted = ListingTag {
            version: "18f.2-9".into(),
            ..tag(None)
        };
        assert_eq!(ListingTag::parse(&dotted.render()), Some(dotted));
        for foreign in [
            "*",
            "\"abc\"",
            "W/\"1.2.3\"",
            "W/\"v.x.0.ff\"",
            "",
            "W/\"a.1.0.zz\"",
        ] {
            assert_eq!(ListingTag::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_tag_holds_until_the_version_the_reader_a_cooldown_or_its_age_says_otherwise() {
        let at = Timestamp::from_secs;
        let r = reader(&["ann", "*"]);
        assert!(tag(None).still_holds("3-17", r, at(1005)));
        assert!(!tag(None).still_holds("3-18", r, at(1005)), "a firing");
        assert!(!tag(None).still_holds("3-17", reader(&["bob", "*"]), at(1005)));
        assert!(tag(Some(1010)).still_holds("3-17", r, at(1009)));
        assert!(
            !tag(Some(1010)).still_holds("3-17", r, at(1010)),
            "the cooldown ended"
        );
        assert!(!tag(None).still_holds("3-17", r, at(1030)), "too old");
        assert!(
            !tag(None).still_holds("3-17", r, at(999)),
            "from the future"
        );
    }
}
