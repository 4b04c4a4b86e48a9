using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>
/// Tenant B against everything tenant A owns, generated from the route table: every /v1 route that takes an id
/// is called by B, with every method it has, on each of A's private ids (those A's list shows and B's does not);
/// every list route is read by B; every POST route is given A's adapter as the model. A new endpoint is covered
/// without editing this test.
/// </summary>
public class IsolationMatrixTests(AdapterLoomFactory factory) : IClassFixture<AdapterLoomFactory>
{
    private static readonly string AdapterDir = Path.Combine(ChatModelFactory.RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4");

    private List<(string Method, string Pattern)> Routes() =>
        factory.Services.GetServices<EndpointDataSource>().SelectMany(s => s.Endpoints).OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/v1/", StringComparison.Ordinal) == true)
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? []).Select(m => (m, e.RoutePattern.RawText!)))
            .Distinct().ToList();

    private static async Task<HashSet<string>> IdentifiersAsync(HttpClient client, string listPath)
    {
        var response = await client.GetAsync(listPath);
        if (response.StatusCode != HttpStatusCode.OK) return [];
        var root = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        if (!root.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array) return [];
        var ids = new HashSet<string>();
        foreach (var item in data.EnumerateArray())
            foreach (var field in new[] { "id", "name" })
                if (item.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String) ids.Add(v.GetString()!);
        return ids;
    }

    [Fact]
    public async Task TenantBGetsA404ForEveryOneOfTenantAsObjectsOnEveryRoute()
    {
        var a = factory.ClientWithKey((await factory.CreateKeyAsync((await factory.CreateTenantAsync($"iso-a-{Guid.NewGuid():N}")).Id, "a key")).Secret);
        var b = factory.ClientWithKey((await factory.CreateKeyAsync((await factory.CreateTenantAsync($"iso-b-{Guid.NewGuid():N}")).Id, "b key")).Secret);
        const string adapterName = "iso-private-lora";
        var form = new MultipartFormDataContent { { new StringContent(adapterName), "name" }, { new StringContent(ChatModelFactory.ModelName), "base_model" } };
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_config.json"))), "adapter_config.json", "adapter_config.json");
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(AdapterDir, "adapter_model.safetensors"))), "adapter_model.safetensors", "adapter_model.safetensors");
        Assert.Equal(HttpStatusCode.Created, (await a.PostAsync("/v1/adapters", form)).StatusCode);
        var file = new MultipartFormDataContent { { new StringContent("fine-tune"), "purpose" } };
        file.Add(new ByteArrayContent(Encoding.UTF8.GetBytes("{\"prompt\":\"a\",\"completion\":\"b\"}\n")), "file", "iso.jsonl");
        Assert.Equal(HttpStatusCode.OK, (await a.PostAsync("/v1/files", file)).StatusCode);

        var routes = Routes();
        var lists = routes.Where(r => r.Method == "GET" && !r.Pattern.Contains('{')).Select(r => r.Pattern).ToList();
        // A's private identifiers per collection: what A's list shows and B's does not.
        var privateIds = new Dictionary<string, HashSet<string>>();
        foreach (var list in lists)
        {
            var mine = await IdentifiersAsync(a, list);
            mine.ExceptWith(await IdentifiersAsync(b, list));
            privateIds[list] = mine;
        }
        var everyPrivate = privateIds.Values.SelectMany(v => v).Where(v => v.Length >= 8 || v == adapterName).ToHashSet();
        Assert.Contains(adapterName, everyPrivate);
        Assert.True(everyPrivate.Count >= 4, $"expected A's key, file and adapter ids, got: {string.Join(", ", everyPrivate)}");

        var checkedCalls = 0;
        foreach (var (method, pattern) in routes.Where(r => r.Pattern.Contains("{id}")))
        {
            var collection = pattern[..pattern.IndexOf("/{id}", StringComparison.Ordinal)];
            foreach (var id in privateIds.GetValueOrDefault(collection) ?? [])
            {
                var request = new HttpRequestMessage(new HttpMethod(method), pattern.Replace("{id}", Uri.EscapeDataString(id)));
                if (method is "POST" or "PUT" or "PATCH") request.Content = new StringContent("{}", Encoding.UTF8, "application/json");
                var response = await b.SendAsync(request);
                await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.NotFound);
                checkedCalls++;
            }
        }
        Assert.True(checkedCalls >= 8, $"only {checkedCalls} id calls were made");

        // Lists as B show nothing of A's.
        foreach (var list in lists)
        {
            var body = await (await b.GetAsync(list)).Content.ReadAsStringAsync();
            Assert.DoesNotContain(everyPrivate, id => body.Contains(id, StringComparison.Ordinal));
        }

        // Every POST route given A's adapter as the model: the answer is the unknown model's, word for word.
        var modelRoutes = 0;
        foreach (var (_, pattern) in routes.Where(r => r.Method == "POST" && !r.Pattern.Contains('{')))
        {
            // A chat-shaped and a completion-shaped body: the route's own shape is the one that gets past validation to the model.
            async Task<(HttpStatusCode, string)> AskAsync(string model)
            {
                (HttpStatusCode, string) last = default;
                foreach (object shape in new object[]
                         {
                             new { model, messages = new[] { new { role = "user", content = "x" } }, max_tokens = 1 },
                             new { model, prompt = "x", max_tokens = 1 },
                         })
                {
                    var r = await b.PostAsync(pattern, new StringContent(JsonSerializer.Serialize(shape), Encoding.UTF8, "application/json"));
                    last = (r.StatusCode, (await r.Content.ReadAsStringAsync()).Replace(model, "MODEL", StringComparison.Ordinal));
                    if (last.Item2.Contains("model_not_found", StringComparison.Ordinal)) break;
                }
                return last;
            }
            var asA = await AskAsync(adapterName);
            Assert.NotEqual(HttpStatusCode.OK, asA.Item1);
            if (!asA.Item2.Contains("model_not_found", StringComparison.Ordinal)) continue;
            Assert.Equal(await AskAsync("no-such-model-0000"), asA);
            modelRoutes++;
        }
        Assert.True(modelRoutes >= 2, "chat completions and completions should both answer model_not_found");

        // A's objects are all still there.
        foreach (var (list, ids) in privateIds)
            Assert.True(ids.IsSubsetOf(await IdentifiersAsync(a, list)), $"A lost objects of {list}");
    }
}
