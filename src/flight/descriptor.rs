//! Flight descriptors: the dataset a request names, in either of its forms
//! (`proto/sheaf.proto`): a dataset URI as text (CMD, or PATH segments
//! joined with `/`), or a `DatasetRequest` packed in a `google.protobuf.Any`
//! (CMD). The form of the request is the form of the answer's metadata.

use crate::proto::{self, Form};
use crate::query::limits::MAX_DESCRIPTOR_BYTES;
use crate::query::{DatasetUri, PutTarget};
use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;
use prost::Message;
use tonic::Status;

/// What a descriptor holds.
enum Named {
    /// A dataset URI.
    Text(String),
    /// A typed request.
    Typed(Box<proto::DatasetRequest>),
}

/// The dataset a GetFlightInfo or GetSchema descriptor names, and its form.
pub fn dataset(d: &FlightDescriptor) -> Result<(DatasetUri, Form), Status> {
    Ok(match named(d)? {
        Named::Text(text) => (DatasetUri::parse(&text)?, Form::Text),
        Named::Typed(request) => (DatasetUri::from_request(&request)?, Form::Typed),
    })
}

/// Where a DoPut descriptor writes, and its form.
pub fn put_target(d: &FlightDescriptor) -> Result<(PutTarget, Form), Status> {
    Ok(match named(d)? {
        Named::Text(text) => (PutTarget::parse(&text)?, Form::Text),
        Named::Typed(request) => (PutTarget::from_request(&request)?, Form::Typed),
    })
}

fn named(d: &FlightDescriptor) -> Result<Named, Status> {
    let size = d.cmd.len() + d.path.iter().map(|p| p.len() + 1).sum::<usize>();
    // Text URIs are held to their own, smaller limit when parsed.
    if size > MAX_DESCRIPTOR_BYTES {
        return Err(Status::invalid_argument(format!(
            "the descriptor is {size} bytes; a dataset request may have at most {MAX_DESCRIPTOR_BYTES}"
        )));
    }
    match d.r#type() {
        DescriptorType::Cmd => match proto::unpack_any(&d.cmd) {
            Some((name, value)) if name == "DatasetRequest" => {
                proto::DatasetRequest::decode(value).map(|r| Named::Typed(Box::new(r))).map_err(|e| {
                    Status::invalid_argument(format!("the CMD descriptor is not a valid DatasetRequest: {e}"))
                })
            }
            Some((name, _)) => Err(Status::invalid_argument(format!(
                "the CMD descriptor packs sheaf.v1.{}; a dataset is named by sheaf.v1.DatasetRequest or a dataset URI",
                crate::query::limits::excerpt(&name)
            ))),
            None => String::from_utf8(d.cmd.to_vec()).map(Named::Text).map_err(|_| {
                Status::invalid_argument(
                    "the CMD descriptor is neither a dataset URI (UTF-8) nor a packed sheaf.v1.DatasetRequest",
                )
            }),
        },
        DescriptorType::Path => Ok(Named::Text(d.path.join("/"))),
        DescriptorType::Unknown => Err(Status::invalid_argument("descriptor type is neither CMD nor PATH")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_name_the_same_dataset() {
        let text = FlightDescriptor::new_cmd("sheaf://demo/weather@abcdef12/t.parquet?columns=a,b&limit=5&sample=0.5");
        let request = proto::DatasetRequest {
            package: "demo/weather".into(),
            revision: Some(proto::dataset_request::Revision::TopHash("ABCDEF12".into())),
            path: "t.parquet".into(),
            columns: vec!["a".into(), "b".into()],
            limit: Some(5),
            sample: Some(0.5),
            ..Default::default()
        };
        let typed = FlightDescriptor::new_cmd(proto::pack(&request));
        let (a, form_a) = dataset(&text).unwrap();
        let (b, form_b) = dataset(&typed).unwrap();
        assert_eq!(a, b);
        assert_eq!((form_a, form_b), (Form::Text, Form::Typed));
    }

    #[test]
    fn typed_requests_are_checked_like_text() {
        let bad = |request: proto::DatasetRequest| {
            dataset(&FlightDescriptor::new_cmd(proto::pack(&request))).unwrap_err().message().to_owned()
        };
        let base = proto::DatasetRequest { package: "demo/weather".into(), ..Default::default() };
        assert!(bad(proto::DatasetRequest { package: "nope".into(), ..base.clone() }).contains("invalid package name"));
        let m = bad(proto::DatasetRequest { sample: Some(2.0), ..base.clone() });
        assert!(m.contains("demo/weather") && m.contains("sample must be between 0 and 1"), "{m}");
        let m = bad(proto::DatasetRequest { path: "../x".into(), ..base.clone() });
        assert!(m.contains("invalid path"), "{m}");
        let m = bad(proto::DatasetRequest { compression: "gzip".into(), ..base.clone() });
        assert!(m.contains("compression"), "{m}");
        let tag = proto::dataset_request::Revision::Tag("bad tag".into());
        assert!(bad(proto::DatasetRequest { revision: Some(tag), ..base.clone() }).contains("invalid tag"));
        // The package may name the revision, unless the request also does.
        let tagged = proto::DatasetRequest { package: "demo/weather:v1".into(), ..base.clone() };
        let (uri, _) = dataset(&FlightDescriptor::new_cmd(proto::pack(&tagged))).unwrap();
        assert_eq!(uri.revision, crate::registry::Revision::Tag("v1".into()));
        let both =
            proto::DatasetRequest { revision: Some(proto::dataset_request::Revision::Tag("v2".into())), ..tagged };
        assert!(bad(both).contains("already names a revision"));
        // A packed message of another type is named.
        let other = FlightDescriptor::new_cmd(proto::pack(&proto::ResolveRequest::default()));
        assert!(dataset(&other).unwrap_err().message().contains("ResolveRequest"));
        // DoPut takes only package, revision, path and message.
        let put = proto::DatasetRequest { path: "x.parquet".into(), limit: Some(1), ..base };
        let e = put_target(&FlightDescriptor::new_cmd(proto::pack(&put))).unwrap_err();
        assert!(
            e.message().contains("only package, revision, path, message, session and part apply to DoPut"),
            "{e:?}"
        );
    }
}
