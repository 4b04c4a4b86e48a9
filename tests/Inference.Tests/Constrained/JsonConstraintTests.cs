using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Inference.Constrained;
using Loom.Tests.Shared;

namespace Loom.Inference.Tests.Constrained;

public sealed class JsonConstraintTests
{
    /// <summary>A byte-level test vocabulary: every single byte (ids 0-255, partial UTF-8 included, as byte-level BPE has),
    /// then multi-byte pieces, then an end-of-sequence id with no bytes.</summary>
    private static readonly string[] Pieces =
    [
        "\"", "{\"", "\":", "\": \"", "\", \"", "},", "}]", "}}", "]}", "[]", "{}", ", ", "\n", "  ", "\n  ", "true", "false", "null",
        "123", "-4.5e3", "0.25", "name", "age", "red", "\"red\"", "green", "é", "\\u00e9", "\\n", "\\\"", "x\\\"y", "blé", "tags",
        "nested", "a b", "7", "7.5", "€", "😀", "ab\"", "\"}", "\"]", "1,", "-", "e+", ".",
    ];
    private static readonly byte[][] Vocab = [.. Enumerable.Range(0, 256).Select(b => new[] { (byte)b }), .. Pieces.Select(Encoding.UTF8.GetBytes)];
    private static readonly int Eos = Vocab.Length;
    private static readonly TokenTrie Trie = TokenTrie.Build(Vocab.Length + 1, id => id < Vocab.Length ? Vocab[id] : null);
    private static readonly HashSet<int> Closers = [.. Enumerable.Range(0, Vocab.Length).Where(i => Vocab[i].Length > 0 && "\"}],".Contains((char)Vocab[i][0]) && Vocab[i].Length <= 2)];

    private static TokenConstraint Constraint(JsonGrammar g) => new(g, Trie, id => id < Vocab.Length ? Vocab[id] : null, [Eos]);

    private static JsonGrammar Schema(string json) => JsonGrammar.FromSchema(JsonDocument.Parse(json).RootElement);

    private static bool Accepts(JsonGrammar g, string text, bool complete = true)
    {
        var m = new JsonMatcher(g);
        return m.Advance(Encoding.UTF8.GetBytes(text)) && (!complete || m.CanEnd);
    }

    [Fact]
    public void AcceptsWhatTheSchemaAllowsAndNothingElse()
    {
        var g = Schema("""
            {"type":"object","properties":{"name":{"type":"string","maxLength":5},"age":{"type":"integer"},
             "tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":2},"ok":{"type":["boolean","null"]}},
             "required":["name","age"],"additionalProperties":false}
            """);
        Assert.True(Accepts(g, """{"name":"Ann","age":31}"""));
        Assert.True(Accepts(g, """{ "name": "Ann", "age": -0, "tags": ["a", "b"], "ok": null }"""));
        Assert.True(Accepts(g, """{"name":"é\u00e9\"","age":7,"ok":true}"""));
        Assert.False(Accepts(g, """{"age":31,"name":"Ann"}""")); // declared order
        Assert.False(Accepts(g, """{"name":"Ann"}""")); // missing required
        Assert.False(Accepts(g, """{"name":"Annabel","age":1}""")); // maxLength
        Assert.False(Accepts(g, """{"name":"Ann","age":1.5}""")); // integer
        Assert.False(Accepts(g, """{"name":"Ann","age":01}""")); // leading zero
        Assert.False(Accepts(g, """{"name":"Ann","age":1,"tags":["a","b","a"]}""")); // maxItems
        Assert.False(Accepts(g, """{"name":"Ann","age":1,"tags":["c"]}""")); // enum
        Assert.False(Accepts(g, """{"name":"Ann","age":1,"extra":1}""")); // additional
        Assert.False(Accepts(g, "{\"name\":\"a\nb\",\"age\":1}")); // raw control character in a string
        Assert.False(new JsonMatcher(g).Advance("{\"name\":\"Ann\",\"age\":1} "u8)); // nothing after the value
        Assert.False(Accepts(g, """{"name":"Ann","age":1""")); // incomplete
        Assert.True(Accepts(g, """{"name":"Ann","age":1""", complete: false));

        var any = JsonGrammar.ForAnyObject();
        Assert.True(Accepts(any, """{"a":[1,{"b":null},"x",-2.5E+3,true],"c":{}}"""));
        Assert.False(Accepts(any, "[1]")); // json_object: an object at the top
        Assert.False(Accepts(any, """{"a":tru}"""));
        Assert.True(Accepts(any, "{}"));
    }

    [Fact]
    public void NumbersEndWhereTheirContainerGoesOn()
    {
        var g = Schema("""{"type":"array","items":{"type":"number"}}""");
        Assert.True(Accepts(g, "[1,-2.5,3e10,0.0,4E-2]"));
        Assert.False(Accepts(g, "[1.]"));
        Assert.False(Accepts(g, "[.5]"));
        Assert.False(Accepts(g, "[+1]"));
        Assert.False(Accepts(g, "[" + new string('9', JsonMatcher.MaxDigits + 1) + "]")); // bounded digits
        var top = Schema("""{"type":"integer"}""");
        var m = new JsonMatcher(top);
        Assert.True(m.Advance("42"u8));
        Assert.True(m.CanEnd);
        Assert.False(m.IsDone); // a number at the top can go on; only the end of the sequence ends it
    }

    [Fact]
    public void UnsupportedSchemasAreRefusedNamingWhere()
    {
        static string PathOf(string schema) =>
            Assert.Throws<GrammarNotSupportedException>(() => Schema(schema)).Path;
        Assert.Equal("#/properties/code/pattern", PathOf("""{"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]+$"}}}"""));
        Assert.Equal("#/minimum", PathOf("""{"type":"integer","minimum":3}"""));
        Assert.Equal("#/allOf", PathOf("""{"allOf":[{"type":"string"}]}"""));
        Assert.Equal("#/anyOf", PathOf("""{"anyOf":[{"type":"object"},{"type":"object","properties":{"a":{"type":"string"}}}]}"""));
        Assert.Equal("#/$ref", PathOf("""{"$ref":"https://example.com/schema.json"}"""));
        Assert.Equal("#/required", PathOf("""{"type":"object","properties":{},"required":["a"]}"""));
        // Annotations are not constraints, and pass.
        Schema("""{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"t","description":"d","type":"object","properties":{"a":{"type":"string","description":"x","default":"y"}}}""");
    }

    [Fact]
    public void RecursiveReferencesAndNullableUnionsCompile()
    {
        var g = Schema("""
            {"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},
             "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["value","next"],"additionalProperties":false}}}
            """);
        Assert.True(Accepts(g, """{"value":1,"next":{"value":2,"next":null}}"""));
        Assert.False(Accepts(g, """{"value":1,"next":{"value":2}}"""));
    }

    /// <summary>Random schemas, random walks choosing only among the tokens the mask allows: every finished output
    /// parses and validates (checked by an independent validator), the mask is never empty before the end, and the
    /// trie walk's mask equals trying every token on its own (its scalar twin).</summary>
    [Fact]
    public void RandomWalksUnderRandomSchemasAlwaysGiveValidJson()
    {
        int finished = 0, walks = 300, bruteChecks = 0;
        var logits = new float[Vocab.Length + 4]; // padding ids past the vocabulary, as real models have
        for (int seed = 0; seed < walks; seed++)
        {
            var rng = new Random(seed);
            var schemaNode = SchemaCheck.RandomSchema(rng, 3);
            var schema = JsonDocument.Parse(schemaNode.ToJsonString()).RootElement;
            var grammar = JsonGrammar.FromSchema(schema);
            var c = Constraint(grammar);
            var shadow = new JsonMatcher(grammar);
            var probe = new JsonMatcher(grammar);
            var text = new List<byte>();
            bool ended = false;
            for (int step = 0; step < 400 && !ended; step++)
            {
                Array.Clear(logits);
                int count = c.Mask(logits);
                var allowed = Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])).ToList();
                Assert.Equal(count, allowed.Count);
                Assert.True(count > 0, $"seed {seed}: stuck after {Encoding.UTF8.GetString([.. text])}");
                Assert.All(allowed, id => Assert.True(id <= Eos));
                if (step % 7 == 0)
                {
                    for (int id = 0; id < Vocab.Length; id++)
                    {
                        probe.CopyFrom(shadow);
                        Assert.Equal(probe.Advance(Vocab[id]), allowed.Contains(id));
                    }
                    Assert.Equal(shadow.CanEnd, allowed.Contains(Eos));
                    bruteChecks++;
                }
                int token = allowed.Contains(Eos) && rng.Next(2) == 0 ? Eos
                    : allowed.Where(Closers.Contains).ToList() is { Count: > 0 } closers && rng.Next(3) == 0 ? closers[rng.Next(closers.Count)]
                    : allowed[rng.Next(allowed.Count)];
                Assert.True(c.Accept(token));
                if (token != Eos)
                {
                    Assert.True(shadow.Advance(Vocab[token]));
                    text.AddRange(Vocab[token]);
                }
                ended = token == Eos || c.IsDone;
            }
            if (!ended) continue;
            finished++;
            string json = Encoding.UTF8.GetString([.. text]);
            JsonElement value;
            try { value = JsonDocument.Parse(json).RootElement; }
            catch (JsonException e) { Assert.Fail($"seed {seed}: does not parse ({e.Message}): {json}\nschema: {schemaNode}"); return; }
            Assert.True(SchemaCheck.Validates(value, schema, schema, out var why), $"seed {seed}: {why}: {json}\nschema: {schemaNode}");
        }
        Assert.True(finished >= walks * 8 / 10, $"only {finished} of {walks} walks finished within 400 tokens");
        Assert.True(bruteChecks > walks);
    }

    [Fact]
    public void LazyModeIsFreeUntilTheTriggerThenEnforcesOneValueThenIsFreeAgain()
    {
        var g = JsonGrammar.ForToolCalls([("get_time", JsonDocument.Parse("""{"type":"object","properties":{"zone":{"enum":["UTC"]}},"required":["zone"]}""").RootElement)], several: false);
        var c = new TokenConstraint(g, Trie, id => id < Vocab.Length ? Vocab[id] : null, [Eos], Encoding.UTF8.GetBytes("<tc>"));
        var logits = new float[Vocab.Length + 1];
        int Allowed() { Array.Clear(logits); return c.Mask(logits); }
        void Feed(string text) { foreach (byte b in Encoding.UTF8.GetBytes(text)) Assert.True(c.Accept(b)); } // ids 0-255 are single bytes

        Assert.Equal(logits.Length, Allowed()); // free text
        Feed("Sure. <t");
        Assert.False(c.Active);
        Feed("c>");
        Assert.True(c.Active);
        Assert.True(Allowed() < 5); // only the call's opening brace (and pieces starting with it)
        Assert.False(c.IsAllowed(Eos)); // a call cannot be left unfinished
        Feed("{\"name\": \"get_time\", \"arguments\": {\"zone\":\"UTC\"}}");
        Assert.False(c.Active); // complete: free again
        Assert.Equal(logits.Length, Allowed());
        Assert.False(c.IsDone); // lazy mode never ends the sequence by itself
        // A wrong call is refused while active.
        Feed("<tc>");
        Assert.False(c.Accept(Encoding.UTF8.GetBytes("[")[0]));
    }
}
