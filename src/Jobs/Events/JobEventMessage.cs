using System.Text.Json;
using System.Text.Json.Serialization;

namespace Loom.Jobs.Events;

/// <summary>One job event as clients see it (hub messages, the events API). <see cref="Seq"/> is gap-free per job.</summary>
public sealed record JobEventMessage(
    [property: JsonPropertyName("job_id")] string JobId,
    [property: JsonPropertyName("seq")] long Seq,
    [property: JsonPropertyName("created_at")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("payload")] JsonElement Payload);

/// <summary>
/// What goes through PostgreSQL NOTIFY on <see cref="JobEventPublisher.Channel"/>: the tenant and the event, or,
/// when the event would not fit in a notification, only its key (listeners then read it from the table).
/// </summary>
public sealed record JobEventNotification(
    [property: JsonPropertyName("tenant")] Guid TenantId,
    [property: JsonPropertyName("job_id")] string JobId,
    [property: JsonPropertyName("seq")] long Seq,
    [property: JsonPropertyName("event")] JobEventMessage? Event);
