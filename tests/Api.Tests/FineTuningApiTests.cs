using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using static Loom.Api.Tests.FineTuningFactory;

namespace Loom.Api.Tests;

/// <summary>/v1/fine_tuning/jobs without a run: creation (both hyperparameter forms, Loom's LoRA fields), files checked
/// before queueing, errors naming the param, tenant scoping, limits, listing, events, cancel of a queued job.</summary>
public class FineTuningApiTests(FineTuningFactory factory) : IClassFixture<FineTuningFactory>
{
    [Fact]
    public async Task CreateRetrieveListAndEvents()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(4));
        var job = await CreateAsync(client, new
        {
            model = ChatModelFactory.ModelName, training_file = file, suffix = "demo", seed = 42,
            hyperparameters = new { n_epochs = 2, batch_size = "auto", learning_rate_multiplier = 2, rank = 4, target_modules = new[] { "q_proj", "o_proj" } },
        });
        var id = job.GetProperty("id").GetString()!;
        Assert.StartsWith("ftjob-", id);
        Assert.Equal("fine_tuning.job", job.GetProperty("object").GetString());
        Assert.Equal("queued", job.GetProperty("status").GetString()); // files checked; it waits for a node serving the model
        Assert.Equal(ChatModelFactory.ModelName, job.GetProperty("model").GetString());
        Assert.Equal(file, job.GetProperty("training_file").GetString());
        Assert.Equal(42, job.GetProperty("seed").GetInt64());
        Assert.Equal("demo", job.GetProperty("user_provided_suffix").GetString());
        Assert.Equal(JsonValueKind.Null, job.GetProperty("fine_tuned_model").ValueKind);
        var hp = job.GetProperty("hyperparameters");
        Assert.Equal(2, hp.GetProperty("n_epochs").GetInt32());
        Assert.Equal(1, hp.GetProperty("batch_size").GetInt32());
        Assert.Equal(2.0, hp.GetProperty("learning_rate_multiplier").GetDouble());
        Assert.Equal(4, hp.GetProperty("rank").GetInt32());
        Assert.Equal(["q_proj", "o_proj"], hp.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("supervised", job.GetProperty("method").GetProperty("type").GetString());

        var got = await GetAsync(client, $"/v1/fine_tuning/jobs/{id}");
        Assert.Equal(id, got.GetProperty("id").GetString());

        var second = await CreateAsync(client, new
        {
            model = ChatModelFactory.ModelName, training_file = file,
            method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 3 } } },
        });
        Assert.Equal(3, second.GetProperty("hyperparameters").GetProperty("n_epochs").GetInt32());
        var list = await GetAsync(client, "/v1/fine_tuning/jobs?limit=1");
        Assert.Equal("list", list.GetProperty("object").GetString());
        Assert.True(list.GetProperty("has_more").GetBoolean());
        Assert.Equal(second.GetProperty("id").GetString(), list.GetProperty("data")[0].GetProperty("id").GetString()); // newest first
        var next = await GetAsync(client, $"/v1/fine_tuning/jobs?limit=1&after={second.GetProperty("id").GetString()}");
        Assert.Equal(id, next.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.False(next.GetProperty("has_more").GetBoolean());

        var events = (await GetAsync(client, $"/v1/fine_tuning/jobs/{id}/events")).GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(["validated", "created"], events.Select(e => e.GetProperty("kind").GetString())); // newest first
        Assert.Equal(4, events[0].GetProperty("data").GetProperty("training_examples").GetInt32());
        var created = events[1];
        Assert.Equal("fine_tuning.job.event", created.GetProperty("object").GetString());
        Assert.Contains(id, created.GetProperty("message").GetString());
        Assert.Equal("info", created.GetProperty("level").GetString());
        var checkpoints = await GetAsync(client, $"/v1/fine_tuning/jobs/{id}/checkpoints");
        Assert.Empty(checkpoints.GetProperty("data").EnumerateArray());
    }

    [Theory]
    [InlineData("""{"training_file":"FILE"}""", "model")]
    [InlineData("""{"model":"tiny-chat"}""", "training_file")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","hyperparameters":{"n_epochs":0}}""", "hyperparameters.n_epochs")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","hyperparameters":{"batch_size":"many"}}""", "hyperparameters.batch_size")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","hyperparameters":{"learning_rate_multiplier":-1}}""", "hyperparameters.learning_rate_multiplier")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":"x"}}}}""", "method.supervised.hyperparameters.n_epochs")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","method":{"type":"dpo"}}""", "method.type")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","hyperparameters":{},"method":{"type":"supervised","supervised":{"hyperparameters":{}}}}""", "hyperparameters")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","rank":0}""", "rank")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","target_modules":["bogus"]}""", "target_modules")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","suffix":"no spaces"}""", "suffix")]
    [InlineData("""{"model":"tiny-chat","training_file":"FILE","seed":-3}""", "seed")]
    public async Task BadRequestsNameTheParam(string body, string param)
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(2));
        var response = await client.PostAsync("/v1/fine_tuning/jobs", new StringContent(body.Replace("FILE", file), System.Text.Encoding.UTF8, "application/json"));
        await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.BadRequest, param: param);
        Assert.Empty((await GetAsync(client, "/v1/fine_tuning/jobs")).GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task AFileWhoseLineIsTooLongForTheContextIsRefusedNamingTheLine()
    {
        var client = await factory.TenantClientAsync();
        var tooLong = JsonSerializer.Serialize(new { prompt = "p", completion = string.Join(' ', Enumerable.Repeat("word", 400)) });
        var file = await UploadAsync(client, Examples(2) + tooLong + "\n");
        var response = await client.PostAsJsonAsync("/v1/fine_tuning/jobs", new { model = ChatModelFactory.ModelName, training_file = file });
        var error = await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.BadRequest, "invalid_training_file", "training_file");
        Assert.Contains("line 3", error.GetProperty("message").GetString());
        Assert.Empty((await GetAsync(client, "/v1/fine_tuning/jobs")).GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task AnotherTenantsFileAndJobAreNotFound()
    {
        var owner = await factory.TenantClientAsync();
        var other = await factory.TenantClientAsync();
        var file = await UploadAsync(owner, Examples(2));
        var response = await other.PostAsJsonAsync("/v1/fine_tuning/jobs", new { model = ChatModelFactory.ModelName, training_file = file });
        await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.NotFound, "file_not_found", "training_file");
        var job = (await CreateAsync(owner, new { model = ChatModelFactory.ModelName, training_file = file })).GetProperty("id").GetString();
        await ErrorAssert.IsEnvelopeAsync(await other.GetAsync($"/v1/fine_tuning/jobs/{job}"), HttpStatusCode.NotFound, param: "id");
        await ErrorAssert.IsEnvelopeAsync(await other.PostAsync($"/v1/fine_tuning/jobs/{job}/cancel", null), HttpStatusCode.NotFound, param: "id");
        await ErrorAssert.IsEnvelopeAsync(await other.GetAsync($"/v1/fine_tuning/jobs/{job}/events"), HttpStatusCode.NotFound, param: "id");
        Assert.Empty((await GetAsync(other, "/v1/fine_tuning/jobs")).GetProperty("data").EnumerateArray());
        await ErrorAssert.IsEnvelopeAsync(await other.PostAsJsonAsync("/v1/fine_tuning/jobs", new { model = "no-such-model", training_file = file }),
            HttpStatusCode.NotFound, "model_not_found", "model");
    }

    [Fact]
    public async Task JobsPastTheTenantsRunningAndQueuedLimitsGet429()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(2));
        // One running slot plus two queued.
        for (int i = 0; i < 3; i++) await CreateAsync(client, new { model = ChatModelFactory.ModelName, training_file = file });
        var response = await client.PostAsJsonAsync("/v1/fine_tuning/jobs", new { model = ChatModelFactory.ModelName, training_file = file });
        await ErrorAssert.IsEnvelopeAsync(response, HttpStatusCode.TooManyRequests, "rate_limit_exceeded");
        // Another tenant is not affected.
        var other = await factory.TenantClientAsync();
        await CreateAsync(other, new { model = ChatModelFactory.ModelName, training_file = await UploadAsync(other, Examples(2)) });
    }

    [Fact]
    public async Task AQueuedJobIsCancelledAtOnceAndOnlyOnce()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(2));
        var id = (await CreateAsync(client, new { model = ChatModelFactory.ModelName, training_file = file })).GetProperty("id").GetString();
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync($"/v1/fine_tuning/jobs/{id}/pause", null), HttpStatusCode.Conflict, "job_not_running");
        var cancelled = JsonDocument.Parse(await (await client.PostAsync($"/v1/fine_tuning/jobs/{id}/cancel", null)).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("cancelled", cancelled.GetProperty("status").GetString());
        await ErrorAssert.IsEnvelopeAsync(await client.PostAsync($"/v1/fine_tuning/jobs/{id}/cancel", null), HttpStatusCode.Conflict, "job_finished");
        var events = (await GetAsync(client, $"/v1/fine_tuning/jobs/{id}/events")).GetProperty("data").EnumerateArray().Select(e => e.GetProperty("kind").GetString()).ToList();
        Assert.Equal(["cancelled", "validated", "created"], events);
        // The cancelled job's run does nothing.
        await factory.RunJobAsync(id!);
        Assert.Equal("cancelled", (await GetAsync(client, $"/v1/fine_tuning/jobs/{id}")).GetProperty("status").GetString());
    }
}
