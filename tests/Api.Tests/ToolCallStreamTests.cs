using System.Text;
using System.Text.Json;
using Loom.Api.Completions;

namespace Loom.Api.Tests;

/// <summary>The incremental split of a streamed answer into text and calls: however the text is cut into pieces, the
/// calls' names and arguments and the text come out as the whole-answer parse gives them, the arguments in more than
/// one fragment once they arrive in several pieces.</summary>
public class ToolCallStreamTests
{
    private static ToolCalling Tools(string choice) => ToolCalling.Read(RequestReader.Parse(JsonDocument.Parse(
        """{"tools":[{"type":"function","function":{"name":"get_time"}},{"type":"function","function":{"name":"get_weather"}}],"tool_choice":""" + choice + "}")));

    private sealed record Split(string Text, List<(string Id, string Name, string Args, int Fragments)> Calls);

    private static Split Run(bool forced, string output, int[] cuts)
    {
        var stream = new ToolCallStream(forced);
        var text = new StringBuilder();
        var calls = new List<(string Id, string Name, string Args, int Fragments)>();
        void Apply(IReadOnlyList<ToolStreamPiece> pieces)
        {
            foreach (var piece in pieces)
                switch (piece)
                {
                    case TextPiece t: text.Append(t.Text); break;
                    case CallStartedPiece c:
                        Assert.Equal(calls.Count, c.Index);
                        calls.Add((c.Id, c.Name, "", 0));
                        break;
                    case ArgumentsPiece a:
                        Assert.Equal(calls.Count - 1, a.Index);
                        Assert.NotEmpty(a.Fragment);
                        calls[^1] = calls[^1] with { Args = calls[^1].Args + a.Fragment, Fragments = calls[^1].Fragments + 1 };
                        break;
                }
        }
        int at = 0;
        foreach (var cut in cuts.Append(output.Length))
        {
            Apply(stream.Push(output[at..cut]));
            at = cut;
        }
        Apply(stream.Finish());
        Assert.Equal(calls.Count, stream.Calls);
        return new Split(text.ToString(), calls);
    }

    private static int[] RandomCuts(Random random, int length) =>
        [.. Enumerable.Range(0, random.Next(1, Math.Max(2, length / 2))).Select(_ => random.Next(0, length + 1)).Order()];

    public static TheoryData<string, string> Answers => new()
    {
        { "\"auto\"", "Let me look.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"U\\\"TC}\", \"n\": [1, {\"a\": 2}]}}\n</tool_call>" },
        { "\"auto\"", "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>" },
        { "\"auto\"", "No calls here, only a < sign and <tool_ca without the tag." },
        { "\"required\"", "[{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\", \"unit\": \"c\"}}]" },
        { "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}", "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pune\", \"unit\": \"f\"}}" },
    };

    [Theory]
    [MemberData(nameof(Answers))]
    public void PiecesAddUpToTheWholeAnswersParse(string choice, string output)
    {
        var tools = Tools(choice);
        var (content, calls) = tools.Parse(output);
        var random = new Random(output.Length);
        foreach (var cuts in new[] { [], Enumerable.Range(1, output.Length - 1).ToArray() }.Concat(Enumerable.Range(0, 20).Select(_ => RandomCuts(random, output.Length))))
        {
            var split = Run(tools.Forced, output, cuts);
            Assert.Equal(content ?? "", split.Text);
            Assert.Equal(calls.Select(c => (c.Function.Name, c.Function.Arguments)), split.Calls.Select(c => (c.Name, c.Args)));
            Assert.All(split.Calls, c => Assert.StartsWith("call_", c.Id));
            Assert.Equal(split.Calls.Count, split.Calls.Select(c => c.Id).Distinct().Count());
            if (cuts.Length == output.Length - 1) // one character at a time: every argument arrives in several fragments
                Assert.All(split.Calls, c => Assert.True(c.Fragments > 1 || c.Args.Length <= 2, $"{c.Args} in {c.Fragments} fragment(s)"));
        }
    }

    [Fact]
    public void ACallCutShortHasStreamedWhatItHad()
    {
        var split = Run(forced: false, "Sure.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zo", [3, 20, 40]);
        Assert.Equal("Sure.", split.Text);
        var call = Assert.Single(split.Calls);
        Assert.Equal(("get_time", "{\"zo"), (call.Name, call.Args));
    }
}
