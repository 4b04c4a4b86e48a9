using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Loom.Web.Portal.Playground;

/// <summary>What the playground would send, as a streamed /v1/chat/completions request.</summary>
public sealed record ChatRequestSpec(string Model, IReadOnlyList<(string Role, string Content)> Messages, double Temperature, double TopP, int MaxTokens, long? Seed);

/// <summary>The playground's request as a curl command and as Python and Node programs using the official openai
/// packages, with the API key read from LOOM_API_KEY.</summary>
public static class ChatSnippets
{
    private static readonly JsonSerializerOptions Pretty = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The request body: OpenAI's chat completion fields, streamed.</summary>
    public static JsonObject Body(ChatRequestSpec spec)
    {
        var body = new JsonObject
        {
            ["model"] = spec.Model,
            ["messages"] = new JsonArray(spec.Messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray()),
            ["temperature"] = spec.Temperature,
            ["top_p"] = spec.TopP,
            ["max_tokens"] = spec.MaxTokens,
        };
        if (spec.Seed is { } seed) body["seed"] = seed;
        body["stream"] = true;
        return body;
    }

    public static string Curl(ChatRequestSpec spec, string baseUrl) =>
        $"""
        curl -N {Url(baseUrl)}v1/chat/completions \
          -H "Authorization: Bearer $LOOM_API_KEY" \
          -H "Content-Type: application/json" \
          -d '{Body(spec).ToJsonString(Pretty).Replace("'", "'\\''")}'
        """;

    public static string Python(ChatRequestSpec spec, string baseUrl)
    {
        var body = Body(spec);
        body.Remove("stream");
        var args = string.Join(",\n", body.Select(p => $"    {p.Key}={PythonValue(p.Value)}"));
        return $"""
            import os
            from openai import OpenAI

            client = OpenAI(base_url="{Url(baseUrl)}v1", api_key=os.environ["LOOM_API_KEY"])
            stream = client.chat.completions.create(
            {args},
                stream=True,
            )
            for chunk in stream:
                if chunk.choices:
                    print(chunk.choices[0].delta.content or "", end="", flush=True)
            print()
            """;
    }

    public static string Node(ChatRequestSpec spec, string baseUrl) =>
        $$"""
        import OpenAI from "openai";

        const client = new OpenAI({ baseURL: "{{Url(baseUrl)}}v1", apiKey: process.env.LOOM_API_KEY });
        const stream = await client.chat.completions.create({{Body(spec).ToJsonString(Pretty)}});
        for await (const chunk of stream) {
          process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
        }
        process.stdout.write("\n");
        """;

    private static string Url(string baseUrl) => baseUrl.EndsWith('/') ? baseUrl : baseUrl + "/";

    /// <summary>The fields are strings, numbers and lists of string-valued objects: their JSON is also a Python literal.</summary>
    private static string PythonValue(JsonNode? value) => value?.ToJsonString(Pretty).Replace("\n", "\n    ") ?? "None";
}
