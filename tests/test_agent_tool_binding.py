"""The chat model reuses its tool binding only for the same model, tools and options."""

from langchain_core.tools import tool

from agent.tool_binding import ToolBindingChatOpenAI


@tool
def lookup(city: str) -> str:
    """Look a city up."""
    return city


@tool
def forecast(city: str, days: int) -> str:
    """Forecast the weather."""
    return f"{city} {days}"


def model() -> ToolBindingChatOpenAI:
    return ToolBindingChatOpenAI(model="qwen-plus", base_url="http://127.0.0.1:9/v1", api_key="test-key")


def test_the_same_tools_and_options_get_the_same_binding():
    chat = model()
    first = chat.bind_tools([lookup, forecast])
    assert chat.bind_tools([lookup, forecast]) is first
    assert [t["function"]["name"] for t in first.kwargs["tools"]] == ["lookup", "forecast"]
    assert first.kwargs["tools"][1]["function"]["parameters"]["required"] == ["city", "days"]


def test_other_tools_or_options_get_a_new_binding():
    chat = model()
    first = chat.bind_tools([lookup, forecast])
    assert chat.bind_tools([lookup]) is not first
    forced = chat.bind_tools([lookup], tool_choice="lookup")
    assert forced.kwargs["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert chat.bind_tools([lookup]).kwargs.get("tool_choice") is None


def test_a_copy_with_other_settings_binds_itself_not_the_original():
    chat = model()
    original = chat.bind_tools([lookup])
    warmer = chat.model_copy(update={"temperature": 0.9})
    binding = warmer.bind_tools([lookup])
    assert binding is not original and binding.bound is warmer and binding.bound.temperature == 0.9
    assert chat.bind_tools([lookup]) is original  # the copy's binding did not replace the original's
