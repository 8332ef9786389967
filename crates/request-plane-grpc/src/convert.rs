//! Conversions between the pipeline's types and the wire messages of `proto/worker.proto`.
//!
//! Outgoing conversions take their value and move its strings and vectors into the message.
//! Incoming conversions check every message received from the network: a missing required
//! field or an enum value this version does not know is a [`ProtoError`], never a panic and
//! never a silently defaulted value.

use smallvec::SmallVec;
use switchyard_engines::EngineError;
use switchyard_protocol::{
    CacheKey, EngineOutput, FinishReason, GuidedDecoding, OutputLogprobs, OutputOptions,
    PreprocessedRequest, SamplingOptions, StopConditions, TokenLogprob,
};

use crate::pb;
use crate::pb::generate_response::Kind;

/// An incoming message that does not follow `proto/worker.proto`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{field} has unknown value {value}")]
    UnknownEnumValue { field: &'static str, value: i32 },
    #[error("{0}")]
    Invalid(&'static str),
}

// ---- requests: frontend → worker ----

pub fn request_to_proto(request: PreprocessedRequest) -> pb::GenerateRequest {
    let PreprocessedRequest {
        request_id,
        model,
        token_ids,
        sampling,
        stop,
        output,
        cache_key,
        resumed_output_tokens,
    } = request;
    pb::GenerateRequest {
        request_id,
        model,
        token_ids,
        sampling: Some(pb::SamplingOptions {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k,
            min_p: sampling.min_p,
            seed: sampling.seed,
            presence_penalty: sampling.presence_penalty,
            frequency_penalty: sampling.frequency_penalty,
            repetition_penalty: sampling.repetition_penalty,
            logprobs: sampling.logprobs,
            logit_bias: sampling
                .logit_bias
                .into_iter()
                .map(|(token_id, bias)| pb::LogitBias { token_id, bias })
                .collect(),
            guided: sampling.guided.map(|guided| pb::GuidedDecoding {
                kind: Some(match guided {
                    GuidedDecoding::JsonObject => {
                        pb::guided_decoding::Kind::JsonObject(pb::Empty {})
                    }
                    GuidedDecoding::JsonSchema(schema) => {
                        pb::guided_decoding::Kind::JsonSchema(schema)
                    }
                }),
            }),
        }),
        stop: Some(pb::StopConditions {
            max_tokens: stop.max_tokens,
            min_tokens: stop.min_tokens,
            stop_strings: stop.stop_strings,
            stop_token_ids: stop.stop_token_ids,
            eos_token_ids: stop.eos_token_ids,
            ignore_eos: stop.ignore_eos,
        }),
        output: Some(pb::OutputOptions {
            skip_special_tokens: output.skip_special_tokens,
        }),
        // The empty key is sent as an absent message: no bytes for the common case.
        cache_key: (!cache_key.is_empty()).then_some(pb::CacheKey {
            lora_name: cache_key.lora_name,
            cache_salt: cache_key.cache_salt,
        }),
        resumed_output_tokens,
    }
}

pub fn request_from_proto(request: pb::GenerateRequest) -> Result<PreprocessedRequest, ProtoError> {
    let sampling = request
        .sampling
        .ok_or(ProtoError::Missing("GenerateRequest.sampling"))?;
    let stop = request
        .stop
        .ok_or(ProtoError::Missing("GenerateRequest.stop"))?;
    let output = request
        .output
        .ok_or(ProtoError::Missing("GenerateRequest.output"))?;
    let cache_key = request.cache_key.unwrap_or_default();
    let guided = match sampling.guided {
        None => None,
        Some(guided) => Some(
            match guided
                .kind
                .ok_or(ProtoError::Missing("GuidedDecoding.kind"))?
            {
                pb::guided_decoding::Kind::JsonObject(_) => GuidedDecoding::JsonObject,
                pb::guided_decoding::Kind::JsonSchema(schema) => GuidedDecoding::JsonSchema(schema),
            },
        ),
    };
    Ok(PreprocessedRequest {
        request_id: request.request_id,
        model: request.model,
        token_ids: request.token_ids,
        sampling: SamplingOptions {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k,
            min_p: sampling.min_p,
            seed: sampling.seed,
            presence_penalty: sampling.presence_penalty,
            frequency_penalty: sampling.frequency_penalty,
            repetition_penalty: sampling.repetition_penalty,
            logprobs: sampling.logprobs,
            logit_bias: sampling
                .logit_bias
                .into_iter()
                .map(|b| (b.token_id, b.bias))
                .collect(),
            guided,
        },
        stop: StopConditions {
            max_tokens: stop.max_tokens,
            min_tokens: stop.min_tokens,
            stop_strings: stop.stop_strings,
            stop_token_ids: stop.stop_token_ids,
            eos_token_ids: stop.eos_token_ids,
            ignore_eos: stop.ignore_eos,
        },
        output: OutputOptions {
            skip_special_tokens: output.skip_special_tokens,
        },
        cache_key: CacheKey {
            lora_name: cache_key.lora_name,
            cache_salt: cache_key.cache_salt,
        },
        resumed_output_tokens: request.resumed_output_tokens,
    })
}

// ---- responses: worker → frontend ----

pub fn response_to_proto(item: Result<EngineOutput, EngineError>) -> pb::GenerateResponse {
    let kind = match item {
        Ok(output) => Kind::Output(pb::Output {
            token_ids: output.token_ids.to_vec(),
            finish_reason: finish_reason_to_proto(output.finish_reason) as i32,
            cached_tokens: output.cached_tokens,
            logprobs: output
                .logprobs
                .into_iter()
                .map(|lp| pb::TokenLogprobs {
                    logprob: lp.logprob,
                    top_token_ids: lp.top.iter().map(|t| t.token_id).collect(),
                    top_logprobs: lp.top.iter().map(|t| t.logprob).collect(),
                })
                .collect(),
        }),
        Err(error) => Kind::Error(error_to_proto(error)),
    };
    pb::GenerateResponse { kind: Some(kind) }
}

/// The item a response stands for: an engine output or the engine's own error.
pub fn response_from_proto(
    response: pb::GenerateResponse,
) -> Result<Result<EngineOutput, EngineError>, ProtoError> {
    match response.kind {
        Some(Kind::Output(output)) => {
            if !output.logprobs.is_empty() && output.logprobs.len() != output.token_ids.len() {
                return Err(ProtoError::Invalid(
                    "Output.logprobs must have one entry per token",
                ));
            }
            let logprobs = output
                .logprobs
                .into_iter()
                .map(|lp| {
                    if lp.top_token_ids.len() != lp.top_logprobs.len() {
                        return Err(ProtoError::Invalid(
                            "TokenLogprobs.top_token_ids and top_logprobs differ in length",
                        ));
                    }
                    Ok(OutputLogprobs {
                        logprob: lp.logprob,
                        top: lp
                            .top_token_ids
                            .into_iter()
                            .zip(lp.top_logprobs)
                            .map(|(token_id, logprob)| TokenLogprob { token_id, logprob })
                            .collect(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Ok(EngineOutput {
                token_ids: SmallVec::from_vec(output.token_ids),
                finish_reason: finish_reason_from_proto(output.finish_reason)?,
                cached_tokens: output.cached_tokens,
                logprobs,
            }))
        }
        Some(Kind::Error(error)) => Ok(Err(error_from_proto(error)?)),
        None => Err(ProtoError::Missing("GenerateResponse.kind")),
    }
}

pub fn error_to_proto(error: EngineError) -> pb::Error {
    let (kind, message) = match error {
        EngineError::InvalidRequest(m) => (pb::ErrorKind::InvalidRequest, m),
        EngineError::Overloaded(m) => (pb::ErrorKind::Overloaded, m),
        EngineError::Failed(m) => (pb::ErrorKind::Failed, m),
    };
    pb::Error {
        kind: kind as i32,
        message,
    }
}

pub fn error_from_proto(error: pb::Error) -> Result<EngineError, ProtoError> {
    let kind = pb::ErrorKind::try_from(error.kind).map_err(|_| ProtoError::UnknownEnumValue {
        field: "Error.kind",
        value: error.kind,
    })?;
    Ok(match kind {
        pb::ErrorKind::Unspecified => return Err(ProtoError::Missing("Error.kind")),
        pb::ErrorKind::InvalidRequest => EngineError::InvalidRequest(error.message),
        pb::ErrorKind::Overloaded => EngineError::Overloaded(error.message),
        pb::ErrorKind::Failed => EngineError::Failed(error.message),
    })
}

fn finish_reason_to_proto(reason: Option<FinishReason>) -> pb::FinishReason {
    match reason {
        None => pb::FinishReason::Unspecified,
        Some(FinishReason::Stop) => pb::FinishReason::Stop,
        Some(FinishReason::Length) => pb::FinishReason::Length,
        Some(FinishReason::Cancelled) => pb::FinishReason::Cancelled,
    }
}

fn finish_reason_from_proto(value: i32) -> Result<Option<FinishReason>, ProtoError> {
    let reason = pb::FinishReason::try_from(value).map_err(|_| ProtoError::UnknownEnumValue {
        field: "Output.finish_reason",
        value,
    })?;
    Ok(match reason {
        pb::FinishReason::Unspecified => None,
        pb::FinishReason::Stop => Some(FinishReason::Stop),
        pb::FinishReason::Length => Some(FinishReason::Length),
        pb::FinishReason::Cancelled => Some(FinishReason::Cancelled),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    fn full_request() -> PreprocessedRequest {
        PreprocessedRequest {
            request_id: "req-1".into(),
            model: "m".into(),
            token_ids: vec![0, 1, u32::MAX, 151_643],
            sampling: SamplingOptions {
                temperature: Some(0.0),
                top_p: Some(0.9),
                top_k: Some(-1),
                min_p: Some(0.05),
                seed: Some(u64::MAX),
                presence_penalty: Some(-2.0),
                frequency_penalty: Some(2.0),
                repetition_penalty: Some(1.1),
                logprobs: Some(20),
                logit_bias: vec![(0, -100.0), (5, 0.5), (u32::MAX, 100.0)],
                guided: Some(GuidedDecoding::JsonSchema(r#"{"type":"object"}"#.into())),
            },
            stop: StopConditions {
                max_tokens: 16,
                min_tokens: 2,
                stop_strings: vec!["\n\n".into(), "é".into()],
                stop_token_ids: vec![7],
                eos_token_ids: vec![2, 3],
                ignore_eos: true,
            },
            output: OutputOptions {
                skip_special_tokens: false,
            },
            cache_key: CacheKey {
                lora_name: Some("adapter".into()),
                cache_salt: Some(String::new()),
            },
            resumed_output_tokens: 3,
        }
    }

    /// Through the wire bytes, not just the message structs.
    fn request_via_bytes(request: PreprocessedRequest) -> Result<PreprocessedRequest, ProtoError> {
        let bytes = request_to_proto(request).encode_to_vec();
        request_from_proto(pb::GenerateRequest::decode(bytes.as_slice()).unwrap())
    }

    fn response_via_bytes(
        item: Result<EngineOutput, EngineError>,
    ) -> Result<Result<EngineOutput, EngineError>, ProtoError> {
        let bytes = response_to_proto(item).encode_to_vec();
        response_from_proto(pb::GenerateResponse::decode(bytes.as_slice()).unwrap())
    }

    #[test]
    fn request_round_trips_with_every_field_set_and_with_defaults() {
        assert_eq!(request_via_bytes(full_request()).unwrap(), full_request());
        let defaults = PreprocessedRequest::default();
        assert_eq!(request_via_bytes(defaults.clone()).unwrap(), defaults);
        // `Some(0.0)` is not "unset": optional scalars keep their presence.
        let decoded = request_via_bytes(full_request()).unwrap();
        assert_eq!(decoded.sampling.temperature, Some(0.0));
        assert_eq!(decoded.cache_key.cache_salt, Some(String::new()));
        let mut json_object = full_request();
        json_object.sampling.guided = Some(GuidedDecoding::JsonObject);
        assert_eq!(request_via_bytes(json_object.clone()).unwrap(), json_object);
        let mut no_kind = request_to_proto(full_request());
        no_kind.sampling.as_mut().unwrap().guided = Some(pb::GuidedDecoding { kind: None });
        assert!(matches!(
            request_from_proto(no_kind),
            Err(ProtoError::Missing("GuidedDecoding.kind"))
        ));
    }

    #[test]
    fn prompt_tokens_are_packed() {
        let request = PreprocessedRequest {
            token_ids: vec![1; 1000],
            ..Default::default()
        };
        let bytes = request_to_proto(request).encode_to_vec();
        // Packed: one tag + length, then one byte per small id (unpacked would be 2 per id).
        assert!(bytes.len() < 1100, "{} bytes", bytes.len());
    }

    #[test]
    fn missing_required_request_fields_are_named() {
        for (field, clear) in [
            (
                "GenerateRequest.sampling",
                (|r: &mut pb::GenerateRequest| r.sampling = None) as fn(&mut pb::GenerateRequest),
            ),
            ("GenerateRequest.stop", |r| r.stop = None),
            ("GenerateRequest.output", |r| r.output = None),
        ] {
            let mut message = request_to_proto(full_request());
            clear(&mut message);
            let err = request_from_proto(message).unwrap_err();
            assert_eq!(err, ProtoError::Missing(field));
            assert_eq!(err.to_string(), format!("{field} is missing"));
        }
        // An absent cache key is the empty key, not an error.
        let mut message = request_to_proto(full_request());
        message.cache_key = None;
        assert!(request_from_proto(message).unwrap().cache_key.is_empty());
    }

    #[test]
    fn responses_round_trip_every_finish_reason_and_error_kind() {
        let mut outputs = vec![
            EngineOutput::token(5),
            EngineOutput::default().finished(FinishReason::Length),
            EngineOutput::token(9).finished(FinishReason::Stop),
            EngineOutput::token(1).finished(FinishReason::Cancelled),
        ];
        outputs[0].cached_tokens = Some(0);
        outputs[1].cached_tokens = Some(128);
        outputs[2].token_ids.extend([1, 2, 3, 4, 5, 6]);
        for output in outputs {
            assert_eq!(response_via_bytes(Ok(output.clone())).unwrap(), Ok(output));
        }
        for error in [
            EngineError::InvalidRequest("too long".into()),
            EngineError::Overloaded("full".into()),
            EngineError::Failed(String::new()),
        ] {
            assert_eq!(response_via_bytes(Err(error.clone())).unwrap(), Err(error));
        }
    }

    #[test]
    fn logprobs_that_do_not_line_up_with_tokens_are_refused() {
        let output = |token_ids: Vec<u32>, logprobs| pb::GenerateResponse {
            kind: Some(Kind::Output(pb::Output {
                token_ids,
                finish_reason: pb::FinishReason::Unspecified as i32,
                cached_tokens: None,
                logprobs,
            })),
        };
        let one = |ids: Vec<u32>, values: Vec<f32>| pb::TokenLogprobs {
            logprob: -0.5,
            top_token_ids: ids,
            top_logprobs: values,
        };
        // Two tokens, one logprobs entry.
        assert!(matches!(
            response_from_proto(output(vec![1, 2], vec![one(vec![], vec![])])),
            Err(ProtoError::Invalid(_))
        ));
        // Alternatives' ids and values differ in length.
        assert!(matches!(
            response_from_proto(output(vec![1], vec![one(vec![1, 2], vec![-0.1])])),
            Err(ProtoError::Invalid(_))
        ));
        // Lined up: kept in order.
        let ok = response_from_proto(output(vec![1], vec![one(vec![1, 9], vec![-0.5, -2.0])]))
            .unwrap()
            .unwrap();
        assert_eq!(ok.logprobs[0].top[1].token_id, 9);
        assert_eq!(ok.logprobs[0].top[1].logprob, -2.0);
    }

    #[test]
    fn unknown_or_missing_enum_values_are_refused() {
        let output = |finish_reason| pb::GenerateResponse {
            kind: Some(Kind::Output(pb::Output {
                token_ids: vec![1],
                finish_reason,
                cached_tokens: None,
                logprobs: Vec::new(),
            })),
        };
        assert_eq!(
            response_from_proto(output(4)).unwrap_err(),
            ProtoError::UnknownEnumValue {
                field: "Output.finish_reason",
                value: 4
            }
        );
        assert!(response_from_proto(output(-1)).is_err());
        let error = |kind| pb::GenerateResponse {
            kind: Some(Kind::Error(pb::Error {
                kind,
                message: "x".into(),
            })),
        };
        assert_eq!(
            response_from_proto(error(0)).unwrap_err(),
            ProtoError::Missing("Error.kind")
        );
        assert_eq!(
            response_from_proto(error(99)).unwrap_err().to_string(),
            "Error.kind has unknown value 99"
        );
        assert_eq!(
            response_from_proto(pb::GenerateResponse { kind: None }).unwrap_err(),
            ProtoError::Missing("GenerateResponse.kind")
        );
    }

    fn opt_f32() -> impl Strategy<Value = Option<f32>> {
        // Finite values: NaN is not equal to itself, which says nothing about the wire.
        proptest::option::of(-1.0e6f32..1.0e6)
    }

    prop_compose! {
        fn any_request()(
            request_id in ".{0,12}",
            model in ".{0,8}",
            token_ids in proptest::collection::vec(any::<u32>(), 0..64),
            floats in proptest::collection::vec(opt_f32(), 6),
            top_k in proptest::option::of(any::<i32>()),
            seed in proptest::option::of(any::<u64>()),
            max_tokens in any::<u32>(),
            min_tokens in any::<u32>(),
            stop_strings in proptest::collection::vec(".{0,6}", 0..3),
            stop_token_ids in proptest::collection::vec(any::<u32>(), 0..4),
            eos_token_ids in proptest::collection::vec(any::<u32>(), 0..3),
            ignore_eos in any::<bool>(),
            skip_special_tokens in any::<bool>(),
            lora_name in proptest::option::of(".{0,8}"),
            cache_salt in proptest::option::of(".{0,8}"),
            logit_bias in proptest::collection::vec((any::<u32>(), -100.0f32..100.0), 0..4),
            schema in proptest::option::of(proptest::option::of(".{0,12}")),
        ) -> PreprocessedRequest {
            PreprocessedRequest {
                request_id,
                model,
                token_ids,
                sampling: SamplingOptions {
                    temperature: floats[0],
                    top_p: floats[1],
                    top_k,
                    min_p: floats[2],
                    seed,
                    presence_penalty: floats[3],
                    frequency_penalty: floats[4],
                    repetition_penalty: floats[5],
                    logprobs: top_k.map(|k| k.unsigned_abs() % 21),
                    logit_bias,
                    guided: schema.map(|s| s.map_or(GuidedDecoding::JsonObject, GuidedDecoding::JsonSchema)),
                },
                stop: StopConditions {
                    max_tokens,
                    min_tokens,
                    stop_strings,
                    stop_token_ids,
                    eos_token_ids,
                    ignore_eos,
                },
                output: OutputOptions { skip_special_tokens },
                cache_key: CacheKey { lora_name, cache_salt },
                resumed_output_tokens: max_tokens / 2,
            }
        }
    }

    fn any_item() -> impl Strategy<Value = Result<EngineOutput, EngineError>> {
        let finish = proptest::option::of(prop_oneof![
            Just(FinishReason::Stop),
            Just(FinishReason::Length),
            Just(FinishReason::Cancelled),
        ]);
        let output = (
            proptest::collection::vec(any::<u32>(), 0..8),
            finish,
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(tokens, finish_reason, cached_tokens)| {
                // Every other output carries logprobs (one per token, with alternatives).
                let logprobs = if tokens.len() % 2 == 1 {
                    tokens
                        .iter()
                        .map(|&t| OutputLogprobs {
                            logprob: -((t % 97) as f32) / 7.0,
                            top: (0..t % 3)
                                .map(|j| TokenLogprob {
                                    token_id: t.wrapping_add(j),
                                    logprob: -(j as f32),
                                })
                                .collect(),
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                EngineOutput {
                    token_ids: SmallVec::from_vec(tokens),
                    finish_reason,
                    cached_tokens,
                    logprobs,
                }
            });
        let error = prop_oneof![
            ".{0,10}".prop_map(EngineError::InvalidRequest),
            ".{0,10}".prop_map(EngineError::Overloaded),
            ".{0,10}".prop_map(EngineError::Failed),
        ];
        prop_oneof![output.prop_map(Ok), error.prop_map(Err)]
    }

    proptest! {
        #[test]
        fn any_request_round_trips(request in any_request()) {
            prop_assert_eq!(request_via_bytes(request.clone()).unwrap(), request);
        }

        #[test]
        fn any_response_round_trips(item in any_item()) {
            prop_assert_eq!(response_via_bytes(item.clone()).unwrap(), item);
        }

        /// Garbage from the network decodes to an error or to a checked value, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(message) = pb::GenerateRequest::decode(bytes.as_slice()) {
                let _ = request_from_proto(message);
            }
            if let Ok(message) = pb::GenerateResponse::decode(bytes.as_slice()) {
                let _ = response_from_proto(message);
            }
        }
    }
}
