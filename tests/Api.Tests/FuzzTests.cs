using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Loom.Api.Files;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Loom.Api.Tests;

/// <summary>
/// Seeded, time-boxed fuzzing at the edges: JSON bodies of every POST route in the route table, the multipart
/// parser, JSONL files, PEFT archives and safetensors headers. Every answer is below 500 and in the envelope when
/// it is an error, and no request takes longer than <see cref="PerRequest"/>. The seed is printed; set
/// LOOM_FUZZ_SEED to replay one.
/// </summary>
public class FuzzTests(SmallUploadsFactory factory, ITestOutputHelper output) : IClassFixture<SmallUploadsFactory>
{
    private static readonly TimeSpan Slice = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan PerRequest = TimeSpan.FromSeconds(20);
    private static readonly string AdapterDir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4");

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("LOOM_FUZZ_SEED"), out var s) ? s : 20261129;

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"fuzz-{Guid.NewGuid():N}");
        return factory.ClientWithKey((await factory.CreateKeyAsync(tenant.Id)).Secret);
    }

    private static byte[] Mutate(Random rng, byte[] input)
    {
        var data = new List<byte>(input);
        for (var n = rng.Next(1, 6); n > 0; n--)
        {
            var at = data.Count == 0 ? 0 : rng.Next(data.Count);
            switch (rng.Next(7))
            {
                case 0 when data.Count > 0: data.RemoveAt(at); break;
                case 1: data.Insert(at, (byte)rng.Next(256)); break;
                case 2 when data.Count > 0: data[at] = (byte)rng.Next(256); break;
                case 3: data.InsertRange(at, Encoding.UTF8.GetBytes(rng.Next(3) switch { 0 => "99999999999999999999", 1 => "-1", _ => "null" })); break;
                case 4: data.InsertRange(at, Encoding.UTF8.GetBytes(new string('[', rng.Next(1, 2000)))); break;
                case 5 when data.Count > 2: data.InsertRange(at, data.GetRange(rng.Next(data.Count / 2), Math.Min(64, data.Count / 2))); break;
                case 6 when data.Count > 0: data.RemoveRange(at, data.Count - at); break;
            }
        }
        return data.ToArray();
    }

    private static async Task CheckAsync(HttpResponseMessage response, Stopwatch took, string what)
    {
        Assert.True(took.Elapsed < PerRequest, $"{what}: took {took.Elapsed}");
        Assert.True((int)response.StatusCode < 500, $"{what}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        if ((int)response.StatusCode >= 400) await ErrorAssert.IsEnvelopeAsync(response, response.StatusCode);
    }

    private async Task<int> RunAsync(string name, Func<Random, Task> one)
    {
        var rng = new Random(Seed ^ name.Aggregate(17, (h, c) => h * 31 + c));
        var clock = Stopwatch.StartNew();
        var cases = 0;
        while (clock.Elapsed < Slice) { await one(rng); cases++; }
        output.WriteLine($"{name}: {cases} cases (seed {Seed})");
        return cases;
    }

    [Fact]
    public async Task JsonBodiesOfEveryPostRoute()
    {
        var client = await ClientAsync();
        var posts = factory.Services.GetServices<EndpointDataSource>().SelectMany(s => s.Endpoints).OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/v1/", StringComparison.Ordinal) == true && e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods.Contains("POST") == true)
            .Select(e => e.RoutePattern.RawText!.Replace("{id}", "x")).Distinct().ToList();
        Assert.NotEmpty(posts);
        byte[][] seeds =
        [
            Encoding.UTF8.GetBytes("""{"model":"tiny-chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"temperature":0.5,"stop":["x"],"logprobs":true,"top_logprobs":2}"""),
            Encoding.UTF8.GetBytes("""{"model":"tiny-chat","prompt":"hi","max_tokens":2,"echo":true,"logprobs":1}"""),
            Encoding.UTF8.GetBytes("""{"name":"k","priority":"batch","scopes":["inference"],"expires_at":4102444800}"""),
        ];
        Assert.True(await RunAsync("json", async rng =>
        {
            var route = posts[rng.Next(posts.Count)];
            var body = Mutate(rng, seeds[rng.Next(seeds.Length)]);
            var took = Stopwatch.StartNew();
            var response = await client.PostAsync(route, new ByteArrayContent(body) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } });
            await CheckAsync(response, took, $"POST {route} {Encoding.UTF8.GetString(body)[..Math.Min(200, body.Length)]}");
        }) > 0);
    }

    [Fact]
    public async Task MultipartArchivesAndSafetensorsHeaders()
    {
        var client = await ClientAsync();
        var config = File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_config.json"));
        var weights = File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"));
        var headerLength = (int)BitConverter.ToUInt64(weights, 0) + 8;
        var tgz = ArchiveBuilder.TarGz(("adapter_config.json", config), ("adapter_model.safetensors", weights));
        var zip = ArchiveBuilder.Zip(("adapter_config.json", config), ("adapter_model.safetensors", weights));
        var n = 0;
        Assert.True(await RunAsync("upload", async rng =>
        {
            var name = $"f{n++}";
            HttpContent content;
            string route;
            switch (rng.Next(4))
            {
                case 0: // raw multipart bytes
                {
                    var form = new MultipartFormDataContent("fuzz-boundary") { { new StringContent("fine-tune"), "purpose" } };
                    form.Add(new ByteArrayContent(Encoding.UTF8.GetBytes("{\"prompt\":\"a\",\"completion\":\"b\"}\n")), "file", "t.jsonl");
                    var raw = Mutate(rng, await form.ReadAsByteArrayAsync());
                    content = new ByteArrayContent(raw) { Headers = { ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=fuzz-boundary") } };
                    route = "/v1/files";
                    break;
                }
                case 1: // a mutated archive
                {
                    var isZip = rng.Next(2) == 0;
                    var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
                    form.Add(new ByteArrayContent(Mutate(rng, isZip ? zip : tgz)), "file", isZip ? "a.zip" : "a.tar.gz");
                    content = form;
                    route = "/v1/adapters";
                    break;
                }
                default: // a mutated safetensors header or config
                {
                    var w = (byte[])weights.Clone();
                    var c = config;
                    if (rng.Next(2) == 0)
                    {
                        var header = Mutate(rng, w[8..headerLength]);
                        w = [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. weights[headerLength..]];
                    }
                    else c = Mutate(rng, config);
                    var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
                    form.Add(new ByteArrayContent(c), "adapter_config.json", "adapter_config.json");
                    form.Add(new ByteArrayContent(w), "adapter_model.safetensors", "adapter_model.safetensors");
                    content = form;
                    route = "/v1/adapters";
                    break;
                }
            }
            var took = Stopwatch.StartNew();
            var response = await client.PostAsync(route, content);
            await CheckAsync(response, took, $"POST {route} ({name})");
            if (response.StatusCode == HttpStatusCode.Created) await client.DeleteAsync($"/v1/adapters/{name}");
        }) > 0);
    }

    [Fact]
    public async Task JsonlValidatorNeverThrows()
    {
        var seed = Encoding.UTF8.GetBytes("""
            {"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"u"}]},{"role":"assistant","content":"a","weight":1}]}
            {"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}

            """);
        Assert.True(await RunAsync("jsonl", async rng =>
        {
            var content = Mutate(rng, seed);
            var result = await JsonlValidator.ValidateAsync(new MemoryStream(content), 4096);
            Assert.True(result.Ok || (result.BadLine >= 1 && !string.IsNullOrEmpty(result.Problem)), Encoding.UTF8.GetString(content));
        }) > 0);
    }
}
