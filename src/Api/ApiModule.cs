using Loom.Api.Auth;
using Loom.Api.Adapters;
using Loom.Api.Completions;
using Loom.Api.Embeddings;
using Loom.Api.Errors;
using Loom.Api.Files;
using Loom.Api.FineTuning;
using Loom.Api.Keys;
using Loom.Api.Limits;
using Loom.Api.Models;
using Loom.Api.Responses;
using Loom.Api.Usage;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Loom.Inference.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Loom.Api;

/// <summary>Entry point of the OpenAI-compatible REST API (role "api").</summary>
public static class ApiModule
{
    public const string PolicyName = "loom-api-key";
    private const long ChunkedSlackBytes = 2L * 1024 * 1024;

    public static IServiceCollection AddApi(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ApiOptions>().BindConfiguration("Api").Validate(o => o.MaxRequestBodyBytes > 0, "Api:MaxRequestBodyBytes must be positive").ValidateOnStart();
        services.AddOpenApi("v1", o =>
        {
            o.ShouldInclude = d => d.RelativePath?.StartsWith("v1/", StringComparison.Ordinal) == true;
            o.AddDocumentTransformer((doc, _, _) =>
            {
                doc.Info = new() { Title = "Loom API", Version = "v1", Description = "OpenAI-compatible API of the Loom LoRA platform. Authenticate with 'Authorization: Bearer sk-loom-...'." };
                return Task.CompletedTask;
            });
        });
        services.AddOptions<RateLimitOptions>().BindConfiguration("Api:RateLimits");
        services.AddSingleton<TenantRateLimiter>();
        services.AddOptions<UploadOptions>().BindConfiguration("Api:Uploads");
        services.AddSingleton<UploadGate>();
        services.AddOptions<FailedAuthOptions>().BindConfiguration("Api:FailedAuth");
        services.TryAddSingleton<FailedAuthLimiter>();
        services.AddScoped<StorageQuota>();
        services.AddScoped<CompletionService>();
        services.AddScoped<ResponseStore>();
        services.AddOptions<ResponsesOptions>().BindConfiguration("Api:Responses")
            .Validate(o => !o.Problems().Any(), "Invalid Api:Responses options (see ResponsesOptions).").ValidateOnStart();
        services.AddSingleton<UsageRecorder>();
        services.AddHostedService(sp => sp.GetRequiredService<UsageRecorder>());
        services.AddEngineAdapters();
        // The engine of this process unless the cluster wiring says completions go to inference nodes.
        services.TryAddSingleton<Loom.Cluster.IInferenceClient, Loom.Cluster.InProcessInferenceClient>();
        services.AddScoped<AdapterService>();
        services.AddScoped<FileService>();
        services.AddScoped<FineTuneService>();
        services.AddOptions<FineTuningOptions>().BindConfiguration("FineTuning")
            .Validate(o => !o.Problems().Any(), "Invalid FineTuning options (see FineTuningOptions).").ValidateOnStart();
        services.AddScoped<UsageService>();
        // A node without the inference role has no engine: completions then answer that the model is not served here.
        services.TryAddSingleton<IInferenceEngine, UnconfiguredInferenceEngine>();
        services.AddApiKeyAuthentication();
        // Every /v1 endpoint needs a key holding the scope the endpoint declares (manage when it declares none).
        services.AddSingleton<Microsoft.AspNetCore.Authorization.IAuthorizationHandler, ScopeAuthorizationHandler>();
        services.AddAuthorizationBuilder().AddPolicy(PolicyName, p => p.AddAuthenticationSchemes(ApiKeyDefaults.Scheme).RequireAuthenticatedUser()
            .AddRequirements(new ScopeRequirement()));
        // Let body-binding failures reach ApiExceptionMiddleware, which answers in OpenAI's envelope.
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddOptions<FormOptions>().Configure<IOptions<ApiOptions>>((form, api) => form.MultipartBodyLengthLimit = api.Value.MaxUploadBytes);
        return services;
    }

    /// <summary>Tenants' stored adapters made servable by this process's engine (<see cref="EngineAdapters"/>): API nodes
    /// and inference nodes (which register the adapters that requests from API nodes name) both need it.</summary>
    public static IServiceCollection AddEngineAdapters(this IServiceCollection services)
    {
        services.AddOptions<ApiOptions>().BindConfiguration("Api");
        services.TryAddSingleton(sp => new ServedEngines(sp.GetRequiredService<IInferenceEngine>(),
            sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<InferenceOptions>>().Value));
        services.TryAddSingleton<EngineAdapters>();
        services.TryAddSingleton<Loom.Cluster.IAdapterRegistrar>(sp => sp.GetRequiredService<EngineAdapters>());
        return services;
    }

    /// <summary>The bearer API-key scheme (<see cref="ApiKeyDefaults.Scheme"/>); safe to call from several modules
    /// (the API, and the web role's hubs that also accept keys).</summary>
    public static IServiceCollection AddApiKeyAuthentication(this IServiceCollection services)
    {
        if (services.Any(d => d.ServiceType == typeof(ApiKeyAuthenticationHandler))) return services;
        services.AddAuthentication().AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyDefaults.Scheme, null);
        return services;
    }

    public static IEndpointRouteBuilder MapApi(this WebApplication app)
    {
        var limits = app.Services.GetRequiredService<IOptions<ApiOptions>>().Value;
        app.UseWhen(c => c.Request.Path.StartsWithSegments("/v1"), branch =>
        {
            branch.Use((context, next) =>
            {
                var maxBody = IsUpload(context.Request) ? limits.MaxUploadBytes : limits.MaxRequestBodyBytes;
                if (context.Request.ContentLength > maxBody)
                    return ApiErrors.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, $"The request body is too large (limit {maxBody} bytes).", "invalid_request_error", code: "request_too_large");
                var chunked = context.Request.ContentLength is null;
                // A chunked body is counted by LimitedRequestBody, which answers 413 in the envelope. The server's own
                // limit stays above it as a backstop: Kestrel counts whole reads from its input buffer (up to 1 MiB), and
                // its error would reach JSON binding as an IOException and leave an empty 413.
                if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
                    limit.MaxRequestBodySize = chunked ? maxBody + ChunkedSlackBytes : maxBody;
                if (chunked) context.Request.Body = new LimitedRequestBody(context.Request.Body, maxBody);
                return next(context);
            });
            branch.UseMiddleware<ApiExceptionMiddleware>();
        });

        app.MapOpenApi("/openapi/{documentName}.json").AllowAnonymous();
        var v1 = app.MapGroup("/v1").RequireAuthorization(PolicyName).AddEndpointFilter<RateLimitFilter>();
        v1.MapModels();
        v1.MapApiKeys();
        v1.MapChatCompletions();
        v1.MapCompletions();
        v1.MapResponses();
        v1.MapEmbeddings();
        v1.MapFiles();
        v1.MapAdapters();
        v1.MapFineTuning();
        v1.MapUsage();
        return app;
    }

    private static bool IsUpload(HttpRequest r) =>
        HttpMethods.IsPost(r.Method) && (r.Path.StartsWithSegments("/v1/files") || r.Path.StartsWithSegments("/v1/adapters"));
}
