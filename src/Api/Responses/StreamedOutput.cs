using System.Text;
using System.Text.Json.Nodes;
using Loom.Api.Completions;

namespace Loom.Api.Responses;

/// <summary>The output items of a streamed response, built and announced as the text arrives: a message item opens with
/// the first text and takes its deltas; a function call item opens as soon as the call's name is known and takes its
/// arguments fragment by fragment (<c>response.function_call_arguments.delta</c>). Items are numbered in the order they
/// open; a call closes an open message, and text after a call opens another.</summary>
internal sealed class StreamedOutput(ResponseEvents events, ToolCalling tools)
{
    private readonly JsonArray _items = [];
    private readonly ToolCallStream? _split = tools.Enabled ? new ToolCallStream(tools.Forced) : null;
    private (int Index, string Id, StringBuilder Text)? _message;
    private (int Index, JsonObject Item, StringBuilder Arguments)? _call;

    /// <summary>Text the model produced.</summary>
    public void Push(string text)
    {
        if (_split is null) Text(text);
        else Apply(_split.Push(text));
    }

    /// <summary>Closes what is open (incomplete when cut short) and returns the output items; an answer with nothing in
    /// it is one empty message.</summary>
    public JsonArray Finish(bool cut)
    {
        if (_split is not null) Apply(_split.Finish());
        if (_items.Count == 0 && _message is null) Open();
        CloseMessage(cut);
        CloseCall(cut);
        return _items;
    }

    private void Apply(IReadOnlyList<ToolStreamPiece> pieces)
    {
        foreach (var piece in pieces)
            switch (piece)
            {
                case TextPiece t: Text(t.Text); break;
                case CallStartedPiece c:
                    CloseMessage(cut: false);
                    CloseCall(cut: false);
                    var item = ResponseObject.FunctionCall(new ToolCallObject(c.Id, "function", new ToolCallFunction(c.Name, "")));
                    _call = (_items.Count, item, new StringBuilder());
                    _items.Add(null); // its place; the finished item goes there when it closes
                    events.FunctionCallOpened(_call.Value.Index, item);
                    break;
                case ArgumentsPiece a when _call is { } open:
                    open.Arguments.Append(a.Fragment);
                    events.ArgumentsDelta(open.Index, (string)open.Item["id"]!, a.Fragment);
                    break;
            }
    }

    private void Text(string text)
    {
        if (text.Length == 0) return;
        CloseCall(cut: false);
        if (_message is null) Open();
        _message!.Value.Text.Append(text);
        events.TextDelta(_message.Value.Index, _message.Value.Id, text);
    }

    private void Open()
    {
        _message = (_items.Count, Sse.NewId("msg_"), new StringBuilder());
        _items.Add(null);
        events.MessageOpened(_message.Value.Index, _message.Value.Id);
    }

    private void CloseMessage(bool cut)
    {
        if (_message is not { } m) return;
        var item = ResponseItems.Message("assistant", "output_text", m.Text.ToString(), cut ? "incomplete" : "completed");
        item["id"] = m.Id;
        _items[m.Index] = item;
        events.MessageClosed(m.Index, item);
        _message = null;
    }

    private void CloseCall(bool cut)
    {
        if (_call is not { } c) return;
        c.Item["arguments"] = c.Arguments.ToString();
        c.Item["status"] = cut ? "incomplete" : "completed";
        _items[c.Index] = c.Item;
        events.FunctionCallClosed(c.Index, c.Item);
        _call = null;
    }
}
