//! KServe v2 `ModelInferRequest` bytes (as a gRPC client sends them) → the tensor mapping.

use prost::Message;
use switchyard_kserve::pb::ModelInferRequest;
use switchyard_kserve::tensors::parse_request;
use switchyard_protocol::openai::{CommonParams, StopSpec};

/// Decodes `data` as a protobuf `ModelInferRequest` (undecodable bytes are tonic's to reject),
/// maps its tensors and parameters to generation parameters, and validates those as the
/// service does. Panics on a panic inside the mapping or the validation, or on an error without
/// a message: bad input must get a clear INVALID_ARGUMENT.
pub fn check_kserve_request(data: &[u8]) {
    let Ok(mut request) = ModelInferRequest::decode(data) else {
        return;
    };
    match parse_request(&mut request) {
        Ok(params) => {
            let common = CommonParams {
                max_tokens: params.max_tokens,
                temperature: params.temperature,
                top_p: params.top_p,
                stop: (!params.stop.is_empty()).then(|| StopSpec::Many(params.stop.clone())),
                stream: params.stream,
                ..Default::default()
            };
            if let Err(error) = common.validate() {
                assert!(
                    !error.message.is_empty(),
                    "validation error without a message"
                );
            }
        }
        Err(error) => assert!(!error.message.is_empty(), "mapping error without a message"),
    }
}
