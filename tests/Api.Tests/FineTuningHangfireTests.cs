using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using static Loom.Api.Tests.FineTuningFactory;

namespace Loom.Api.Tests;

/// <summary>The whole path in one process with the api, inference and jobs roles: the API queues the job on Hangfire, a
/// Hangfire worker trains it, and the fine-tuned model answers chat completions as soon as the job has succeeded.</summary>
public class FineTuningHangfireTests(FineTuningWithJobsFactory factory) : IClassFixture<FineTuningWithJobsFactory>
{
    [Fact]
    public async Task AQueuedJobIsTrainedByHangfireAndItsModelAnswers()
    {
        var client = await factory.TenantClientAsync();
        var file = await UploadAsync(client, Examples(4, "-hangfire"));
        var id = (await CreateAsync(client, new
        {
            model = ChatModelFactory.ModelName, training_file = file, seed = 1,
            method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 2, learning_rate_multiplier = 10 } } },
            rank = 2,
        })).GetProperty("id").GetString()!;

        JsonElement job = default;
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (DateTime.UtcNow < deadline)
        {
            job = await GetAsync(client, $"/v1/fine_tuning/jobs/{id}");
            if (job.GetProperty("status").GetString() is "succeeded" or "failed" or "cancelled") break;
            await Task.Delay(200);
        }
        Assert.True(job.GetProperty("status").GetString() == "succeeded", job.GetRawText());
        var model = job.GetProperty("fine_tuned_model").GetString()!;
        var chat = await client.PostAsJsonAsync("/v1/chat/completions", new { model, max_tokens = 3, messages = new[] { new { role = "user", content = "word 2:" } } });
        Assert.True(chat.StatusCode == HttpStatusCode.OK, await chat.Content.ReadAsStringAsync());
        var completion = JsonDocument.Parse(await chat.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(model, completion.GetProperty("model").GetString());
    }
}
