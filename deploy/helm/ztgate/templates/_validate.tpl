{{/*
Checks between values that values.schema.json cannot express. Each failure names the value, so
`helm install` stops before anything reaches the cluster. Included once, by the Deployment.
*/}}
{{- define "ztgate.validate" -}}
{{- $v := .Values -}}
{{- $shared := include "ztgate.sharedStore" . -}}

{{- if and (gt (int $v.replicaCount) 1) (not $shared) -}}
{{- fail "replicaCount: more than one replica needs a store shared by all of them: set store.url to postgresql://... (SQLite lives on one pod's volume)" -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (not $shared) -}}
{{- fail "autoscaling.enabled: autoscaling adds replicas, which need a shared store: set store.url to postgresql://..." -}}
{{- end -}}
{{- if and (or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled) (not $v.quotas.redisUrl) -}}
{{- fail "quotas.redisUrl: with more than one replica (replicaCount or autoscaling.enabled) quota counters must be shared: set quotas.redisUrl to redis://..." -}}
{{- end -}}
{{- if and $shared (not $v.secret.auditSigningKeyKey) -}}
{{- fail "secret.auditSigningKeyKey: a PostgreSQL store needs the audit checkpoint signing key from the Secret (ztgate refuses to start without one)" -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas: must not exceed autoscaling.maxReplicas" -}}
{{- end -}}

{{- if not (or $v.identity.kubernetes.enabled $v.identity.issuers) -}}
{{- fail "identity.issuers: no issuer is trusted (identity.kubernetes.enabled is false and identity.issuers is empty); ztgate has no anonymous mode" -}}
{{- end -}}
{{- if and $v.identity.kubernetes.jwks $v.identity.kubernetes.jwksUri -}}
{{- fail "identity.kubernetes.jwks: set jwks or jwksUri, not both" -}}
{{- end -}}

{{- if $v.metrics.enabled -}}
{{- if eq (int $v.metrics.port) (int $v.containerPort) -}}
{{- fail "metrics.port: must differ from containerPort; /metrics has a listener of its own, never the /v1 one" -}}
{{- end -}}
{{- if and (ne $v.service.type "ClusterIP") (not $v.networkPolicy.enabled) -}}
{{- fail (printf "metrics.enabled: a %s Service would publish the metrics port outside the cluster, and networkPolicy.enabled is false so nothing restricts it to Prometheus; enable networkPolicy, use a ClusterIP Service, or set metrics.enabled to false" $v.service.type) -}}
{{- end -}}
{{- else -}}
{{- if $v.serviceMonitor.enabled -}}
{{- fail "serviceMonitor.enabled: there is nothing to scrape with metrics.enabled false" -}}
{{- end -}}
{{- if $v.prometheusRule.enabled -}}
{{- fail "prometheusRule.enabled: the alert rules need ztgate's metrics; set metrics.enabled" -}}
{{- end -}}
{{- end -}}

{{- if $v.tls -}}
{{- fail "tls: TLS served by ztgate itself is not templated by this chart yet; terminate TLS at the ingress (docs/deployment.md)" -}}
{{- end -}}

{{- range $key := list "listen" "policy" "identity" "store" -}}
{{- if hasKey $v.config $key -}}
{{- fail (printf "config.%s: set by the chart from its own values (docs/deployment.md), not in config" $key) -}}
{{- end -}}
{{- end -}}
{{- range $section, $keys := dict "upstream" (list "api_key" "url") "quotas" (list "redis_url") "audit" (list "signing_key" "signing_key_file") "server" (list "workers" "graceful_shutdown") "metrics" (list "enabled" "listen") -}}
{{- $given := get $v.config $section -}}
{{- if kindIs "map" $given -}}
{{- range $keys -}}
{{- if hasKey $given . -}}
{{- fail (printf "config.%s.%s: set by the chart from its own values (docs/deployment.md), not in config" $section .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- $pdb := $v.podDisruptionBudget -}}
{{- if $pdb.enabled -}}
{{- if and (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) -}}
{{- fail "podDisruptionBudget.maxUnavailable: give minAvailable or maxUnavailable" -}}
{{- end -}}
{{- $fewest := ternary (int $v.autoscaling.minReplicas) (int $v.replicaCount) (eq $v.autoscaling.enabled true) -}}
{{- $min := $pdb.minAvailable -}}
{{- if and (not (kindIs "invalid" $min)) (not (kindIs "string" $min)) (ge (int $min) $fewest) -}}
{{- fail (printf "podDisruptionBudget.minAvailable: %d would keep every one of the %d replicas up, so no node could ever be drained" (int $pdb.minAvailable) $fewest) -}}
{{- end -}}
{{- end -}}

{{- if $v.networkPolicy.enabled -}}
{{- if not $v.networkPolicy.anthropicCIDRs -}}
{{- fail "networkPolicy.anthropicCIDRs: empty; ztgate could not reach the Claude API (list Anthropic's published ranges, or disable networkPolicy)" -}}
{{- end -}}
{{- range $v.networkPolicy.anthropicCIDRs }}{{ $_ := include "ztgate.cidrBits" . }}{{ end -}}
{{- range $i, $rule := $v.networkPolicy.defaultEgress.extraEgress -}}
{{- if not $rule.to -}}
{{- fail (printf "networkPolicy.defaultEgress.extraEgress[%d].to: a rule without `to` allows every destination, the Claude API included" $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}
