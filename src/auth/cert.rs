//! Client certificates (mutual TLS): the name a certificate proves, for
//! `cert:NAME` grants.
//!
//! The TLS layer has already checked the chain against `--tls-client-ca`;
//! this only reads the subject's common name (CN) of the leaf certificate.

use x509_cert::Certificate;
use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
use x509_cert::der::{Decode, oid::ObjectIdentifier};

/// id-at-commonName (2.5.4.3).
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// The subject common name of the DER certificate `der` (the last CN when
/// there are several, the most specific in the name), or `None` when it has
/// none or cannot be read.
pub fn common_name(der: &[u8]) -> Option<String> {
    let cert = Certificate::from_der(der).ok()?;
    let subject = &cert.tbs_certificate.subject;
    let value = subject.0.iter().flat_map(|rdn| rdn.0.iter()).rfind(|atv| atv.oid == COMMON_NAME)?;
    let name = value
        .value
        .decode_as::<Utf8StringRef<'_>>()
        .map(|s| s.as_str().to_owned())
        .or_else(|_| value.value.decode_as::<PrintableStringRef<'_>>().map(|s| s.as_str().to_owned()))
        .ok()?;
    (!name.is_empty() && !name.chars().any(char::is_control)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_has_no_name() {
        assert_eq!(common_name(b""), None);
        assert_eq!(common_name(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
    }
}
