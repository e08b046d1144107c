{{/* Names and labels, the usual Helm way. */}}
{{- define "ztgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ztgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ztgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What selects ztgate's pods: the Service, the PDB and ztgate's own NetworkPolicy. */}}
{{- define "ztgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ztgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ztgate.labels" -}}
helm.sh/chart: {{ include "ztgate.chart" . }}
{{ include "ztgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ztgate
{{- end }}

{{- define "ztgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ztgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ztgate.secretName" -}}
{{- default (include "ztgate.fullname" .) .Values.secret.name }}
{{- end }}

{{- define "ztgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the audit store is PostgreSQL (shared by replicas), "" for SQLite. */}}
{{- define "ztgate.sharedStore" -}}
{{- if or (hasPrefix "postgresql://" .Values.store.url) (hasPrefix "postgres://" .Values.store.url) }}true{{ end }}
{{- end }}

{{/* Where the SQLite store's folder is: the volume is mounted there. */}}
{{- define "ztgate.dataDir" -}}/var/lib/ztgate{{- end }}

{{/*
ztgate's config file, built from the values. Every key is one ztgate's config model has
(src/ztgate/config/model.py); the tests load the rendered file with ztgate's own loader.
*/}}
{{- define "ztgate.config" -}}
{{- $v := .Values -}}
{{- $issuers := list -}}
{{- $k := $v.identity.kubernetes -}}
{{- if $k.enabled -}}
{{- $issuer := dict "name" $k.name "preset" "kubernetes" "issuer" $k.issuer "audiences" $k.audiences "require_pod_binding" $k.requirePodBinding -}}
{{- if $k.allow }}{{ $_ := set $issuer "allow" $k.allow }}{{ end -}}
{{- if $k.groupRules }}{{ $_ := set $issuer "group_rules" $k.groupRules }}{{ end -}}
{{- if $k.jwks }}{{ $_ := set $issuer "jwks_file" "/etc/ztgate/jwks/jwks.json" }}{{ else if $k.jwksUri }}{{ $_ := set $issuer "jwks_uri" $k.jwksUri }}{{ end -}}
{{- $issuers = append $issuers $issuer -}}
{{- end -}}
{{- $issuers = concat $issuers $v.identity.issuers -}}
{{- $owned := dict
      "listen" (printf "0.0.0.0:%d" (int $v.containerPort))
      "policy" "/etc/ztgate/policy/policy.yaml"
      "upstream" (dict "url" $v.upstream.url "api_key" "${ANTHROPIC_API_KEY}")
      "identity" (dict "issuers" $issuers)
      "store" (dict "url" $v.store.url)
      "server" (dict "workers" (int $v.workers) "graceful_shutdown" (int $v.gracefulShutdownSeconds))
      "metrics" (dict "enabled" false)
-}}
{{- if $v.metrics.enabled }}{{ $_ := set $owned "metrics" (dict "enabled" true "listen" (printf "0.0.0.0:%d" (int $v.metrics.port))) }}{{ end -}}
{{- if $v.quotas.redisUrl }}{{ $_ := set $owned "quotas" (dict "redis_url" $v.quotas.redisUrl) }}{{ end -}}
{{- if $v.secret.auditSigningKeyKey }}{{ $_ := set $owned "audit" (dict "signing_key" "${ZTGATE_AUDIT_SIGNING_KEY}") }}{{ end -}}
{{- toYaml (merge $owned (deepCopy $v.config)) -}}
{{- end }}

{{/* The policy file: the values' document under a top-level `policy` key, or the YAML text. */}}
{{- define "ztgate.policy" -}}
{{- if kindIs "string" .Values.policy -}}
{{- .Values.policy -}}
{{- else if hasKey .Values.policy "policy" -}}
{{- toYaml .Values.policy -}}
{{- else -}}
{{- toYaml (dict "policy" .Values.policy) -}}
{{- end -}}
{{- end }}

{{/*
CIDR arithmetic for the NetworkPolicies, which Helm has no function for. An address becomes a
string of bits (32 for IPv4, 128 for IPv6), so two blocks overlap when their bit strings agree
on the shorter of the two prefixes, and one contains the other when, besides, its prefix is
the shorter.

ztgate.cidrBits: "a.b.c.d/n" or "x:y::z/n" -> "<family>|<bits>|<n>".
*/}}
{{- define "ztgate.cidrBits" -}}
{{- $parts := splitList "/" . -}}
{{- if ne (len $parts) 2 }}{{ fail (printf "%q is not a CIDR block (ADDRESS/PREFIX)" .) }}{{ end -}}
{{- $addr := index $parts 0 -}}
{{- $prefix := atoi (index $parts 1) -}}
{{- $bits := "" -}}
{{- $family := "" -}}
{{- if contains ":" $addr -}}
{{- $family = "ipv6" -}}
{{- $hex := dict "0" "0000" "1" "0001" "2" "0010" "3" "0011" "4" "0100" "5" "0101" "6" "0110" "7" "0111" "8" "1000" "9" "1001" "a" "1010" "b" "1011" "c" "1100" "d" "1101" "e" "1110" "f" "1111" -}}
{{- $halves := splitList "::" (lower $addr) -}}
{{- $head := list -}}
{{- $tail := list -}}
{{- if index $halves 0 }}{{ $head = splitList ":" (index $halves 0) }}{{ end -}}
{{- if and (eq (len $halves) 2) (index $halves 1) }}{{ $tail = splitList ":" (index $halves 1) }}{{ end -}}
{{- $groups := $head -}}
{{- if eq (len $halves) 2 -}}
{{- range until (int (sub 8 (add (len $head) (len $tail)))) }}{{ $groups = append $groups "0" }}{{ end -}}
{{- end -}}
{{- $groups = concat $groups $tail -}}
{{- if ne (len $groups) 8 }}{{ fail (printf "%q is not an IPv6 CIDR block" .) }}{{ end -}}
{{- range $groups -}}
{{- $padded := printf "%s%s" (repeat (int (sub 4 (len .))) "0") . -}}
{{- range splitList "" $padded -}}
{{- if not (hasKey $hex .) }}{{ fail (printf "%q is not an IPv6 address" $addr) }}{{ end -}}
{{- $bits = printf "%s%s" $bits (get $hex .) -}}
{{- end -}}
{{- end -}}
{{- if gt $prefix 128 }}{{ fail (printf "%q: an IPv6 prefix is at most 128" .) }}{{ end -}}
{{- else -}}
{{- $family = "ipv4" -}}
{{- $octets := splitList "." $addr -}}
{{- if ne (len $octets) 4 }}{{ fail (printf "%q is not an IPv4 CIDR block" .) }}{{ end -}}
{{- range $octets -}}
{{- if or (not (regexMatch "^[0-9]{1,3}$" .)) (gt (atoi .) 255) }}{{ fail (printf "%q is not an IPv4 address" $addr) }}{{ end -}}
{{- $bits = printf "%s%08b" $bits (atoi .) -}}
{{- end -}}
{{- if gt $prefix 32 }}{{ fail (printf "%q: an IPv4 prefix is at most 32" .) }}{{ end -}}
{{- end -}}
{{- printf "%s|%s|%d" $family $bits $prefix -}}
{{- end }}

{{/*
ztgate.cidrRelation: (list A B) -> "disjoint", "inside" (A within B), "contains" (A holds B,
B not equal), or "equal".
*/}}
{{- define "ztgate.cidrRelation" -}}
{{- $a := splitList "|" (include "ztgate.cidrBits" (index . 0)) -}}
{{- $b := splitList "|" (include "ztgate.cidrBits" (index . 1)) -}}
{{- $pa := atoi (index $a 2) -}}
{{- $pb := atoi (index $b 2) -}}
{{- $shorter := min $pa $pb | int -}}
{{- if or (ne (index $a 0) (index $b 0)) (ne (trunc $shorter (index $a 1)) (trunc $shorter (index $b 1))) -}}
disjoint
{{- else if eq $pa $pb -}}
equal
{{- else if gt $pa $pb -}}
inside
{{- else -}}
contains
{{- end -}}
{{- end }}

{{/*
The default egress policy's extra rules, with every API range that falls inside one of their
ipBlocks added to that block's `except`; a block inside (or equal to) an API range fails.
*/}}
{{- define "ztgate.defaultExtraEgress" -}}
{{- $api := .Values.networkPolicy.anthropicCIDRs -}}
{{- $rules := list -}}
{{- range $i, $rule := .Values.networkPolicy.defaultEgress.extraEgress -}}
{{- $rule = deepCopy $rule -}}
{{- $peers := list -}}
{{- range $j, $peer := (default list $rule.to) -}}
{{- if $peer.ipBlock -}}
{{- $except := default list $peer.ipBlock.except -}}
{{- range $api -}}
{{- $relation := include "ztgate.cidrRelation" (list $peer.ipBlock.cidr .) -}}
{{- if eq $relation "contains" -}}
{{- if not (has . $except) }}{{ $except = append $except . }}{{ end -}}
{{- else if ne $relation "disjoint" -}}
{{- fail (printf "networkPolicy.defaultEgress.extraEgress[%d].to[%d].ipBlock.cidr: %s lies within the Claude API's range %s, which only ztgate may reach" $i $j $peer.ipBlock.cidr .) -}}
{{- end -}}
{{- end -}}
{{- $block := dict "cidr" $peer.ipBlock.cidr -}}
{{- if $except }}{{ $_ := set $block "except" $except }}{{ end -}}
{{- $_ := set $peer "ipBlock" $block -}}
{{- end -}}
{{- $peers = append $peers $peer -}}
{{- end -}}
{{- if $rule.to }}{{ $_ := set $rule "to" $peers }}{{ end -}}
{{- $rules = append $rules $rule -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end }}
