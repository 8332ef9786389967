//! [`ApiError`] → gRPC [`Status`]: the one place gRPC codes are decided (the HTTP status and
//! metrics label come from the same [`ErrorKind`]).

use switchyard_protocol::{ApiError, ErrorKind};
use tonic::{Code, Status};

pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidRequest => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::MethodNotAllowed => Code::Unimplemented,
        ErrorKind::PayloadTooLarge => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

pub fn status(error: &ApiError) -> Status {
    Status::new(code(error.kind), error.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code() {
        let cases = [
            (ApiError::invalid("x"), Code::InvalidArgument),
            (ApiError::model_not_found("m"), Code::NotFound),
            (ApiError::unavailable("x"), Code::Unavailable),
            (ApiError::internal("x"), Code::Internal),
            (
                ApiError::new(ErrorKind::PayloadTooLarge, "x"),
                Code::ResourceExhausted,
            ),
        ];
        for (error, want) in cases {
            let status = status(&error);
            assert_eq!(status.code(), want, "{error:?}");
            assert_eq!(status.message(), error.message);
        }
    }
}
