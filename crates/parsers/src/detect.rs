//! Guessing a model's parsers from its chat template (what the template writes for tool calls
//! and thinking is the format the model was trained to produce) and, failing that, its name.

use crate::reasoning::ReasoningParserKind;
use crate::tool::ToolParserKind;

/// The tool-call format a model most likely uses, or `None` if neither its chat template nor
/// its name says. Templates are trusted first: they show the exact markers.
pub fn guess_tool_parser(chat_template: Option<&str>, model_name: &str) -> Option<ToolParserKind> {
    if let Some(template) = chat_template {
        if template.contains("<｜tool▁calls▁begin｜>") || template.contains("<｜tool▁call▁begin｜>")
        {
            // V3 / R1 put the arguments in a ```json fence; V3.1 writes them right after the
            // separator.
            return Some(if template.contains("```json") {
                ToolParserKind::DeepseekV3
            } else {
                ToolParserKind::DeepseekV31
            });
        }
        if template.contains("[TOOL_CALLS]") {
            return Some(ToolParserKind::Mistral);
        }
        if template.contains("<tool_call>") {
            return Some(ToolParserKind::Hermes);
        }
        if template.contains("<|python_tag|>")
            || template.contains("\"parameters\": dictionary of argument name")
        {
            return Some(ToolParserKind::Llama3Json);
        }
        if template.contains("[func_name1(") {
            return Some(ToolParserKind::Pythonic);
        }
    }
    let name = base_name(model_name);
    if name.contains("deepseek") {
        if ["v3.1", "v3_1", "v3-1", "v31", "v3.2", "v3-2"]
            .iter()
            .any(|v| name.contains(v))
        {
            return Some(ToolParserKind::DeepseekV31);
        }
        if name.contains("v3") || name.contains("r1") {
            return Some(ToolParserKind::DeepseekV3);
        }
        return None;
    }
    if name.contains("qwen") {
        // Qwen3-Coder writes calls as XML (<function=...>), a format not parsed here.
        return (!name.contains("coder") || name.contains("qwen2.5"))
            .then_some(ToolParserKind::Hermes);
    }
    if name.contains("hermes") {
        return Some(ToolParserKind::Hermes);
    }
    if [
        "mistral",
        "mixtral",
        "magistral",
        "devstral",
        "ministral",
        "codestral",
    ]
    .iter()
    .any(|m| name.contains(m))
    {
        return Some(ToolParserKind::Mistral);
    }
    if name.contains("llama-4") || name.contains("llama4") {
        return Some(ToolParserKind::Pythonic);
    }
    if name.contains("llama-3") || name.contains("llama3") {
        return Some(ToolParserKind::Llama3Json);
    }
    None
}

/// The reasoning format a model most likely uses, or `None`.
pub fn guess_reasoning_parser(
    chat_template: Option<&str>,
    model_name: &str,
) -> Option<ReasoningParserKind> {
    let name = base_name(model_name);
    let qwen_like = name.contains("qwen") || name.contains("qwq");
    if let Some(template) = chat_template
        && template.contains("<think>")
    {
        return Some(if qwen_like || template.contains("<|im_start|>") {
            ReasoningParserKind::Qwen3
        } else {
            ReasoningParserKind::DeepseekR1
        });
    }
    if name.contains("deepseek-r1") || name.contains("deepseek_r1") {
        return Some(ReasoningParserKind::DeepseekR1);
    }
    if name.contains("qwq")
        || name.contains("qwen3") && !name.contains("instruct") && !name.contains("coder")
    {
        return Some(ReasoningParserKind::Qwen3);
    }
    None
}

/// `Org/Model-Name` → `model-name`.
fn base_name(model_name: &str) -> String {
    model_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(model_name)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_parsers_when_there_is_no_template() {
        for (name, tool) in [
            ("Qwen/Qwen2.5-7B-Instruct", Some(ToolParserKind::Hermes)),
            ("Qwen/Qwen3-Coder-30B-A3B-Instruct", None),
            (
                "NousResearch/Hermes-3-Llama-3.1-8B",
                Some(ToolParserKind::Hermes),
            ),
            (
                "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
                Some(ToolParserKind::Mistral),
            ),
            (
                "meta-llama/Llama-3.1-8B-Instruct",
                Some(ToolParserKind::Llama3Json),
            ),
            (
                "meta-llama/Llama-4-Scout-17B-16E-Instruct",
                Some(ToolParserKind::Pythonic),
            ),
            (
                "deepseek-ai/DeepSeek-V3-0324",
                Some(ToolParserKind::DeepseekV3),
            ),
            (
                "deepseek-ai/DeepSeek-V3.1",
                Some(ToolParserKind::DeepseekV31),
            ),
            ("google/gemma-3-1b-it", None),
        ] {
            assert_eq!(guess_tool_parser(None, name), tool, "{name}");
        }
        for (name, reasoning) in [
            (
                "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                Some(ReasoningParserKind::DeepseekR1),
            ),
            ("Qwen/QwQ-32B", Some(ReasoningParserKind::Qwen3)),
            ("Qwen/Qwen3-8B", Some(ReasoningParserKind::Qwen3)),
            ("Qwen/Qwen3-235B-A22B-Instruct-2507", None),
            ("meta-llama/Llama-3.1-8B-Instruct", None),
        ] {
            assert_eq!(guess_reasoning_parser(None, name), reasoning, "{name}");
        }
    }

    #[test]
    fn templates_win_over_names() {
        let mistral = "{{ '[TOOL_CALLS]' + tool_calls | tojson }}";
        assert_eq!(
            guess_tool_parser(Some(mistral), "Qwen/Qwen3-8B"),
            Some(ToolParserKind::Mistral)
        );
        let v31 = "{{'<｜tool▁call▁begin｜>' + tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments']}}";
        assert_eq!(
            guess_tool_parser(Some(v31), "my-model"),
            Some(ToolParserKind::DeepseekV31)
        );
        let pythonic = "[func_name1(params_name1=params_value1, params_name2=params_value2...)]";
        assert_eq!(
            guess_tool_parser(Some(pythonic), "x"),
            Some(ToolParserKind::Pythonic)
        );
        let r1 = "{{'<｜Assistant｜><think>\\n'}}";
        assert_eq!(
            guess_reasoning_parser(Some(r1), "x"),
            Some(ReasoningParserKind::DeepseekR1)
        );
        // A template that says nothing falls back to the name.
        assert_eq!(
            guess_tool_parser(Some("{{ messages }}"), "Qwen2.5-7B"),
            Some(ToolParserKind::Hermes)
        );
    }
}
