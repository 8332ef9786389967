//! KServe v2 tensors ↔ a text generation request.
//!
//! Inputs: `text_input` (BYTES, one element, required), `max_tokens` (INT32/UINT32/INT64/UINT64),
//! `temperature`, `top_p` (FP32/FP64), `stop` (BYTES, any number), `stream` / `streaming`
//! (BOOL); the scalars may also come as request `parameters`. Data comes either as typed
//! `contents` or, for every input at once, as `raw_input_contents` (little-endian values; BYTES
//! elements each prefixed by a 4-byte little-endian length).
//!
//! Outputs: `text_output` and `finish_reason`, both BYTES with shape `[1]`, sent as
//! `raw_output_contents` as Triton does (clients read either form).

use std::collections::HashMap;

use switchyard_protocol::ApiError;

use crate::pb::infer_parameter::ParameterChoice;
use crate::pb::model_infer_request::InferInputTensor;
use crate::pb::model_infer_response::InferOutputTensor;
use crate::pb::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};

pub const TEXT_INPUT: &str = "text_input";
pub const TEXT_OUTPUT: &str = "text_output";
pub const FINISH_REASON: &str = "finish_reason";

/// Name, datatype, shape and whether required, of every input the model accepts (what
/// `ModelMetadata` and `ModelConfig` advertise).
pub const INPUTS: [(&str, &str, i64, bool); 7] = [
    (TEXT_INPUT, "BYTES", 1, true),
    ("max_tokens", "INT32", 1, false),
    ("temperature", "FP32", 1, false),
    ("top_p", "FP32", 1, false),
    ("stop", "BYTES", -1, false),
    ("stream", "BOOL", 1, false),
    ("streaming", "BOOL", 1, false),
];

/// Name and datatype of every output, each of shape `[1]`.
pub const OUTPUTS: [(&str, &str); 2] = [(TEXT_OUTPUT, "BYTES"), (FINISH_REASON, "BYTES")];

/// What a request asks for, validated.
#[derive(Debug, Default, PartialEq)]
pub struct GenerateParams {
    pub text: String,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub outputs: RequestedOutputs,
}

/// Which outputs the client wants (all when it names none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestedOutputs {
    pub text: bool,
    pub finish_reason: bool,
}

impl Default for RequestedOutputs {
    fn default() -> Self {
        RequestedOutputs {
            text: true,
            finish_reason: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    MaxTokens,
    Temperature,
    TopP,
    Stop,
    Stream,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        Some(match name {
            TEXT_INPUT => Kind::Text,
            "max_tokens" => Kind::MaxTokens,
            "temperature" => Kind::Temperature,
            "top_p" => Kind::TopP,
            "stop" => Kind::Stop,
            "stream" | "streaming" => Kind::Stream,
            _ => return None,
        })
    }

    fn datatypes(self) -> &'static [&'static str] {
        match self {
            Kind::Text | Kind::Stop => &["BYTES"],
            Kind::MaxTokens => &["INT32", "UINT32", "INT64", "UINT64"],
            Kind::Temperature | Kind::TopP => &["FP32", "FP64"],
            Kind::Stream => &["BOOL"],
        }
    }
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// Validates `req`'s inputs, parameters and requested outputs. Takes the request's data out
/// of it (no copies of the text).
pub fn parse_request(req: &mut ModelInferRequest) -> Result<GenerateParams, ApiError> {
    let raw = std::mem::take(&mut req.raw_input_contents);
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(ApiError::invalid(format!(
            "raw_input_contents has {} entries but the request has {} inputs: send one entry per input, in input order",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut params = GenerateParams::default();
    let mut seen: Vec<Kind> = Vec::with_capacity(req.inputs.len());
    let mut text = None;
    for (i, input) in req.inputs.iter_mut().enumerate() {
        let name = input.name.as_str();
        let Some(kind) = Kind::of(name) else {
            let known: Vec<&str> = INPUTS.iter().map(|(n, ..)| *n).collect();
            return Err(invalid(
                name,
                format!(
                    "unknown input `{name}`; this model accepts {}",
                    known.join(", ")
                ),
            ));
        };
        if seen.contains(&kind) {
            return Err(invalid(name, format!("input `{name}` is given twice")));
        }
        seen.push(kind);
        if !kind.datatypes().contains(&input.datatype.as_str()) {
            return Err(invalid(
                name,
                format!(
                    "input `{name}` must have datatype {}, got `{}`",
                    kind.datatypes().join(" or "),
                    input.datatype
                ),
            ));
        }
        let count = element_count(input)?;
        if kind != Kind::Stop && count != 1 {
            return Err(invalid(
                name,
                format!(
                    "input `{name}` must hold exactly one element, got shape {:?}",
                    input.shape
                ),
            ));
        }
        let data = match raw.get(i) {
            Some(bytes) => {
                if input.contents.as_ref().is_some_and(has_data) {
                    return Err(invalid(
                        name,
                        format!(
                            "input `{name}` has both typed contents and raw_input_contents; send one or the other"
                        ),
                    ));
                }
                Data::Raw(bytes)
            }
            None => Data::Typed(input.contents.take().unwrap_or_default()),
        };
        match kind {
            Kind::Text => {
                let mut texts = data.strings(name, count)?;
                text = texts.pop();
            }
            Kind::Stop => params.stop = data.strings(name, count)?,
            Kind::MaxTokens => params.max_tokens = Some(data.integer(name, &input.datatype)?),
            Kind::Temperature => params.temperature = Some(data.float(name, &input.datatype)?),
            Kind::TopP => params.top_p = Some(data.float(name, &input.datatype)?),
            Kind::Stream => params.stream = data.boolean(name)?,
        }
    }
    apply_parameters(&req.parameters, &seen, &mut params)?;
    params.text = text.ok_or_else(|| {
        invalid(
            TEXT_INPUT,
            format!("the request has no `{TEXT_INPUT}` input (BYTES, shape [1]): the prompt"),
        )
    })?;
    if !req.outputs.is_empty() {
        params.outputs = RequestedOutputs {
            text: false,
            finish_reason: false,
        };
        for output in &req.outputs {
            match output.name.as_str() {
                TEXT_OUTPUT => params.outputs.text = true,
                FINISH_REASON => params.outputs.finish_reason = true,
                other => {
                    return Err(invalid(
                        other,
                        format!(
                            "unknown output `{other}`; this model produces {TEXT_OUTPUT} and {FINISH_REASON}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(params)
}

/// The product of the shape, checked against negative dimensions and overflow.
fn element_count(input: &InferInputTensor) -> Result<usize, ApiError> {
    let mut count: usize = 1;
    for &dim in &input.shape {
        let dim = usize::try_from(dim).map_err(|_| {
            invalid(
                &input.name,
                format!(
                    "input `{}` has a negative dimension in shape {:?}",
                    input.name, input.shape
                ),
            )
        })?;
        count = count.checked_mul(dim).ok_or_else(|| {
            invalid(
                &input.name,
                format!(
                    "input `{}` has an impossible shape {:?}",
                    input.name, input.shape
                ),
            )
        })?;
    }
    Ok(count)
}

fn has_data(c: &InferTensorContents) -> bool {
    !(c.bool_contents.is_empty()
        && c.int_contents.is_empty()
        && c.int64_contents.is_empty()
        && c.uint_contents.is_empty()
        && c.uint64_contents.is_empty()
        && c.fp32_contents.is_empty()
        && c.fp64_contents.is_empty()
        && c.bytes_contents.is_empty())
}

enum Data<'a> {
    Raw(&'a [u8]),
    Typed(InferTensorContents),
}

fn count_mismatch(name: &str, want: usize, got: usize) -> ApiError {
    invalid(
        name,
        format!("input `{name}` has a shape of {want} element(s) but carries {got}"),
    )
}

fn utf8(name: &str, bytes: Vec<u8>) -> Result<String, ApiError> {
    String::from_utf8(bytes)
        .map_err(|_| invalid(name, format!("input `{name}` is not valid UTF-8 text")))
}

impl Data<'_> {
    fn strings(self, name: &str, count: usize) -> Result<Vec<String>, ApiError> {
        match self {
            Data::Typed(c) => {
                if c.bytes_contents.len() != count {
                    return Err(count_mismatch(name, count, c.bytes_contents.len()));
                }
                c.bytes_contents
                    .into_iter()
                    .map(|b| utf8(name, b))
                    .collect()
            }
            Data::Raw(mut bytes) => {
                let mut out = Vec::with_capacity(count.min(1024));
                while !bytes.is_empty() {
                    let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
                        return Err(invalid(
                            name,
                            format!("raw contents of `{name}` end inside a 4-byte length prefix"),
                        ));
                    };
                    let len = u32::from_le_bytes(*len) as usize;
                    if rest.len() < len {
                        return Err(invalid(
                            name,
                            format!(
                                "raw contents of `{name}` announce a {len}-byte element but only {} bytes follow",
                                rest.len()
                            ),
                        ));
                    }
                    out.push(utf8(name, rest[..len].to_vec())?);
                    bytes = &rest[len..];
                }
                if out.len() != count {
                    return Err(count_mismatch(name, count, out.len()));
                }
                Ok(out)
            }
        }
    }

    /// One fixed-size little-endian element.
    fn raw_scalar<const N: usize>(bytes: &[u8], name: &str) -> Result<[u8; N], ApiError> {
        bytes.try_into().map_err(|_| {
            invalid(
                name,
                format!(
                    "raw contents of `{name}` are {} bytes; one element of its datatype is {N}",
                    bytes.len()
                ),
            )
        })
    }

    fn one<T: Copy>(name: &str, values: &[T]) -> Result<T, ApiError> {
        match values {
            [v] => Ok(*v),
            _ => Err(count_mismatch(name, 1, values.len())),
        }
    }

    fn integer(self, name: &str, datatype: &str) -> Result<i64, ApiError> {
        let too_big = || invalid(name, format!("input `{name}` is too large"));
        match (self, datatype) {
            (Data::Typed(c), "INT32") => Ok(Self::one(name, &c.int_contents)?.into()),
            (Data::Typed(c), "UINT32") => Ok(Self::one(name, &c.uint_contents)?.into()),
            (Data::Typed(c), "INT64") => Self::one(name, &c.int64_contents),
            (Data::Typed(c), _) => {
                i64::try_from(Self::one(name, &c.uint64_contents)?).map_err(|_| too_big())
            }
            (Data::Raw(b), "INT32") => Ok(i32::from_le_bytes(Self::raw_scalar(b, name)?).into()),
            (Data::Raw(b), "UINT32") => Ok(u32::from_le_bytes(Self::raw_scalar(b, name)?).into()),
            (Data::Raw(b), "INT64") => Ok(i64::from_le_bytes(Self::raw_scalar(b, name)?)),
            (Data::Raw(b), _) => {
                i64::try_from(u64::from_le_bytes(Self::raw_scalar(b, name)?)).map_err(|_| too_big())
            }
        }
    }

    fn float(self, name: &str, datatype: &str) -> Result<f64, ApiError> {
        match (self, datatype) {
            (Data::Typed(c), "FP32") => Ok(Self::one(name, &c.fp32_contents)?.into()),
            (Data::Typed(c), _) => Self::one(name, &c.fp64_contents),
            (Data::Raw(b), "FP32") => Ok(f32::from_le_bytes(Self::raw_scalar(b, name)?).into()),
            (Data::Raw(b), _) => Ok(f64::from_le_bytes(Self::raw_scalar(b, name)?)),
        }
    }

    fn boolean(self, name: &str) -> Result<bool, ApiError> {
        match self {
            Data::Typed(c) => Self::one(name, &c.bool_contents),
            Data::Raw(b) => match b {
                [0] => Ok(false),
                [1] => Ok(true),
                _ => Err(invalid(
                    name,
                    format!("raw contents of `{name}` must be one byte, 0 or 1"),
                )),
            },
        }
    }
}

/// Request `parameters` carrying the same settings as the inputs. Unknown parameters are
/// ignored (clients send their own, e.g. Triton's `triton_enable_empty_final_response`).
fn apply_parameters(
    parameters: &HashMap<String, InferParameter>,
    inputs: &[Kind],
    params: &mut GenerateParams,
) -> Result<(), ApiError> {
    for (name, value) in parameters {
        let Some(kind) = Kind::of(name) else {
            continue;
        };
        if kind == Kind::Text {
            return Err(invalid(
                name,
                format!("`{TEXT_INPUT}` must be an input tensor, not a parameter"),
            ));
        }
        if inputs.contains(&kind) {
            return Err(invalid(
                name,
                format!("`{name}` is given both as an input and as a parameter"),
            ));
        }
        let wrong = |want: &str| {
            invalid(
                name,
                format!(
                    "parameter `{name}` must be {want}, got {}",
                    describe(value.parameter_choice.as_ref())
                ),
            )
        };
        match (kind, value.parameter_choice.as_ref()) {
            (Kind::MaxTokens, Some(ParameterChoice::Int64Param(v))) => params.max_tokens = Some(*v),
            (Kind::MaxTokens, Some(ParameterChoice::Uint64Param(v))) => {
                params.max_tokens = Some(i64::try_from(*v).map_err(|_| wrong("an integer"))?)
            }
            (Kind::MaxTokens, _) => return Err(wrong("an integer")),
            (Kind::Temperature | Kind::TopP, choice) => {
                let v = match choice {
                    Some(ParameterChoice::DoubleParam(v)) => *v,
                    Some(ParameterChoice::Int64Param(v)) => *v as f64,
                    _ => return Err(wrong("a number")),
                };
                if kind == Kind::Temperature {
                    params.temperature = Some(v);
                } else {
                    params.top_p = Some(v);
                }
            }
            (Kind::Stop, Some(ParameterChoice::StringParam(s))) => params.stop = vec![s.clone()],
            (Kind::Stop, _) => return Err(wrong("a string")),
            (Kind::Stream, Some(ParameterChoice::BoolParam(b))) => params.stream = *b,
            (Kind::Stream, _) => return Err(wrong("a bool")),
            (Kind::Text, _) => {}
        }
    }
    Ok(())
}

fn describe(choice: Option<&ParameterChoice>) -> &'static str {
    match choice {
        None => "nothing",
        Some(ParameterChoice::BoolParam(_)) => "a bool",
        Some(ParameterChoice::Int64Param(_)) => "an int64",
        Some(ParameterChoice::StringParam(_)) => "a string",
        Some(ParameterChoice::DoubleParam(_)) => "a double",
        Some(ParameterChoice::Uint64Param(_)) => "a uint64",
    }
}

/// One element of a BYTES tensor in raw form: 4-byte little-endian length, then the bytes.
fn raw_bytes_element(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + value.len());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn bytes_output(name: &str) -> InferOutputTensor {
    InferOutputTensor {
        name: name.to_string(),
        datatype: "BYTES".to_string(),
        shape: vec![1],
        parameters: HashMap::new(),
        contents: None,
    }
}

/// A response with `text` (when wanted) and, when `finish_reason` is set, the finish reason
/// (when wanted). `final_response` marks the last response of a streamed request as Triton's
/// decoupled models do.
pub fn response(
    model: &str,
    id: &str,
    text: &str,
    finish_reason: Option<&str>,
    outputs: RequestedOutputs,
    final_response: Option<bool>,
) -> ModelInferResponse {
    let mut response = ModelInferResponse {
        model_name: model.to_string(),
        model_version: "1".to_string(),
        id: id.to_string(),
        parameters: HashMap::new(),
        outputs: Vec::with_capacity(2),
        raw_output_contents: Vec::with_capacity(2),
    };
    if outputs.text {
        response.outputs.push(bytes_output(TEXT_OUTPUT));
        response
            .raw_output_contents
            .push(raw_bytes_element(text.as_bytes()));
    }
    if let (true, Some(reason)) = (outputs.finish_reason, finish_reason) {
        response.outputs.push(bytes_output(FINISH_REASON));
        response
            .raw_output_contents
            .push(raw_bytes_element(reason.as_bytes()));
    }
    if let Some(last) = final_response {
        response.parameters.insert(
            "triton_final_response".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::BoolParam(last)),
            },
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::model_infer_request::InferRequestedOutputTensor;

    fn tensor(
        name: &str,
        datatype: &str,
        shape: &[i64],
        contents: InferTensorContents,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: HashMap::new(),
            contents: Some(contents),
        }
    }

    fn text(s: &str) -> InferInputTensor {
        tensor(
            TEXT_INPUT,
            "BYTES",
            &[1],
            InferTensorContents {
                bytes_contents: vec![s.as_bytes().to_vec()],
                ..Default::default()
            },
        )
    }

    fn request(inputs: Vec<InferInputTensor>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            inputs,
            ..Default::default()
        }
    }

    fn raw_strings(values: &[&str]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| raw_bytes_element(v.as_bytes()))
            .collect()
    }

    #[test]
    fn typed_contents_are_read() {
        let mut req = request(vec![
            text("héllo"),
            tensor(
                "max_tokens",
                "INT32",
                &[1],
                InferTensorContents {
                    int_contents: vec![7],
                    ..Default::default()
                },
            ),
            tensor(
                "temperature",
                "FP32",
                &[1, 1],
                InferTensorContents {
                    fp32_contents: vec![0.5],
                    ..Default::default()
                },
            ),
            tensor(
                "stop",
                "BYTES",
                &[2],
                InferTensorContents {
                    bytes_contents: vec![b"a".to_vec(), b"bc".to_vec()],
                    ..Default::default()
                },
            ),
            tensor(
                "streaming",
                "BOOL",
                &[1],
                InferTensorContents {
                    bool_contents: vec![true],
                    ..Default::default()
                },
            ),
        ]);
        let params = parse_request(&mut req).unwrap();
        assert_eq!(params.text, "héllo");
        assert_eq!(params.max_tokens, Some(7));
        assert_eq!(params.temperature, Some(0.5));
        assert_eq!(params.stop, vec!["a", "bc"]);
        assert!(params.stream);
        assert_eq!(params.outputs, RequestedOutputs::default());
    }

    #[test]
    fn raw_contents_are_read() {
        let mut req = request(vec![
            tensor(TEXT_INPUT, "BYTES", &[1, 1], InferTensorContents::default()),
            tensor("max_tokens", "UINT32", &[1], InferTensorContents::default()),
            tensor("top_p", "FP64", &[1], InferTensorContents::default()),
            tensor("stop", "BYTES", &[3], InferTensorContents::default()),
            tensor("stream", "BOOL", &[1], InferTensorContents::default()),
        ]);
        req.raw_input_contents = vec![
            raw_strings(&["hi there"]),
            9u32.to_le_bytes().to_vec(),
            0.25f64.to_le_bytes().to_vec(),
            raw_strings(&["x", "", "yz"]),
            vec![1],
        ];
        let params = parse_request(&mut req).unwrap();
        assert_eq!(params.text, "hi there");
        assert_eq!(params.max_tokens, Some(9));
        assert_eq!(params.top_p, Some(0.25));
        assert_eq!(params.stop, vec!["x", "", "yz"]);
        assert!(params.stream);
    }

    #[test]
    fn parameters_stand_in_for_inputs() {
        let mut req = request(vec![text("x")]);
        let p = |c| InferParameter {
            parameter_choice: Some(c),
        };
        req.parameters = HashMap::from([
            ("max_tokens".to_string(), p(ParameterChoice::Int64Param(3))),
            (
                "temperature".to_string(),
                p(ParameterChoice::DoubleParam(0.1)),
            ),
            (
                "stop".to_string(),
                p(ParameterChoice::StringParam("z".into())),
            ),
            ("stream".to_string(), p(ParameterChoice::BoolParam(true))),
            (
                "something_else".to_string(),
                p(ParameterChoice::BoolParam(true)),
            ),
        ]);
        let params = parse_request(&mut req).unwrap();
        assert_eq!(params.max_tokens, Some(3));
        assert_eq!(params.temperature, Some(0.1));
        assert_eq!(params.stop, vec!["z"]);
        assert!(params.stream);

        let mut req = request(vec![text("x")]);
        req.parameters = HashMap::from([(
            "max_tokens".to_string(),
            p(ParameterChoice::StringParam("3".into())),
        )]);
        let err = parse_request(&mut req).unwrap_err();
        assert!(
            err.message.contains("must be an integer, got a string"),
            "{err}"
        );
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let bad_text = |datatype: &str, shape: &[i64]| {
            request(vec![tensor(
                TEXT_INPUT,
                datatype,
                shape,
                InferTensorContents {
                    bytes_contents: vec![b"a".to_vec()],
                    ..Default::default()
                },
            )])
        };
        let unknown = request(vec![
            text("x"),
            tensor("prompt", "BYTES", &[1], InferTensorContents::default()),
        ]);
        let mut raw_short = request(vec![tensor(TEXT_INPUT, "BYTES", &[1], Default::default())]);
        raw_short.raw_input_contents = vec![vec![10, 0, 0, 0, b'a']];
        let mut raw_count = request(vec![text("x")]);
        raw_count.raw_input_contents = vec![vec![], vec![]];
        let mut both = request(vec![text("x")]);
        both.raw_input_contents = vec![raw_strings(&["y"])];
        let mut bad_output = request(vec![text("x")]);
        bad_output.outputs = vec![InferRequestedOutputTensor {
            name: "logits".into(),
            parameters: HashMap::new(),
        }];
        let mut not_utf8 = request(vec![tensor(
            TEXT_INPUT,
            "BYTES",
            &[1],
            InferTensorContents {
                bytes_contents: vec![vec![0xff, 0xfe]],
                ..Default::default()
            },
        )]);
        let cases: Vec<(ModelInferRequest, &str)> = vec![
            (
                bad_text("INT32", &[1]),
                "must have datatype BYTES, got `INT32`",
            ),
            (bad_text("BYTES", &[2]), "exactly one element"),
            (bad_text("BYTES", &[-1]), "negative dimension"),
            (
                request(vec![
                    tensor(
                        "stop",
                        "BYTES",
                        &[2],
                        InferTensorContents {
                            bytes_contents: vec![b"a".to_vec()],
                            ..Default::default()
                        },
                    ),
                    text("x"),
                ]),
                "shape of 2 element(s) but carries 1",
            ),
            (unknown, "unknown input `prompt`"),
            (request(vec![]), "no `text_input` input"),
            (request(vec![text("a"), text("b")]), "given twice"),
            (raw_short, "announce a 10-byte element"),
            (
                raw_count,
                "raw_input_contents has 2 entries but the request has 1 inputs",
            ),
            (both, "both typed contents and raw_input_contents"),
            (bad_output, "unknown output `logits`"),
            (not_utf8.clone(), "not valid UTF-8"),
        ];
        for (mut req, want) in cases {
            let err = parse_request(&mut req).unwrap_err();
            assert_eq!(err.kind, switchyard_protocol::ErrorKind::InvalidRequest);
            assert!(err.message.contains(want), "{want:?} not in {err}");
        }
        not_utf8.inputs[0].contents = None;
        assert!(parse_request(&mut not_utf8).is_err());
    }

    #[test]
    fn response_carries_requested_outputs_raw() {
        let r = response(
            "m",
            "id-1",
            "hé",
            Some("length"),
            RequestedOutputs::default(),
            Some(true),
        );
        assert_eq!(r.outputs.len(), 2);
        assert_eq!(r.outputs[0].name, TEXT_OUTPUT);
        assert_eq!(r.raw_output_contents[0], raw_strings(&["hé"]));
        assert_eq!(r.raw_output_contents[1], raw_strings(&["length"]));
        assert_eq!(r.id, "id-1");
        let only_finish = RequestedOutputs {
            text: false,
            finish_reason: true,
        };
        let r = response("m", "", "x", None, only_finish, None);
        assert!(r.outputs.is_empty() && r.parameters.is_empty());
    }
}
