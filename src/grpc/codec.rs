//! The protobuf codec of every service (`build.rs` names it): prost's own,
//! except that a message that does not decode (a string field that is not
//! UTF-8, a field of the wrong wire type) is INVALID_ARGUMENT naming the
//! field prost names, like any other bad input. prost's codec answers
//! INTERNAL with prost's text, which would count as a server fault in the
//! logs and the metrics, and carry no details.
//!
//! The generated clients use it too: a reply that does not decode is then
//! INVALID_ARGUMENT as well, which no reply of this server is.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{Codec as GrpcCodec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

use crate::{error::Error, grpc::status::to_status};

/// The codec: prost's encoder, [`MessageDecoder`].
#[derive(Debug, Clone, Copy)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> GrpcCodec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}

/// Decodes with prost; a failure is INVALID_ARGUMENT (see the module).
#[derive(Debug, Clone, Copy)]
pub struct MessageDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| to_status(undecodable(&error)))
    }
}

/// What prost says of a message that does not decode, as a violation of
/// the field it names (`users.email`: the path from the request, without
/// indexes, which prost does not keep), or of `request` when it names none.
fn undecodable(error: &prost::DecodeError) -> Error {
    // "failed to decode Protobuf message: Inner.field: Outer.field: what",
    // the innermost field first.
    let text = error.to_string();
    let mut rest = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text);
    let mut fields = Vec::new();
    while let Some((segment, after)) = rest.split_once(": ")
        && let Some((message, field)) = segment.split_once('.')
        && [message, field]
            .iter()
            .all(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        fields.push(field);
        rest = after;
    }
    fields.reverse();
    let field = if fields.is_empty() {
        "request".to_owned()
    } else {
        fields.join(".")
    };
    Error::invalid(field, format!("does not decode as its protobuf type: {rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn violation(bytes: &[u8]) -> (String, String) {
        let error = match pb::CreateUsersRequest::decode(bytes) {
            Ok(decoded) => panic!("decoded {decoded:?}"),
            Err(error) => undecodable(&error),
        };
        match error {
            Error::Invalid(violations) => (violations[0].field.clone(), violations[0].description.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_that_does_not_decode_names_the_field_from_the_request() {
        // users (1) { email (1): 0xFF, not UTF-8 }.
        let (field, description) = violation(&[0x0A, 0x03, 0x0A, 0x01, 0xFF]);
        assert_eq!(field, "users.email");
        assert!(description.contains("not UTF-8"), "{description}");
        // A length past the message's end names no field.
        let (field, _) = violation(&[0x0A, 0x10]);
        assert_eq!(field, "users");
        let (field, _) = violation(&[0x0F]);
        assert_eq!(field, "request");
    }
}
