{{/*
The chart holds no copy of the manifests: files/deploy links to deploy/, and every object is
read from there at render time, then changed only where a value says so. deploy/ stays the one
source of truth; scripts/helmtest.sh renders both and compares them object by object.
*/}}

{{/* Helm's labels, added to every object beside deploy/'s app.kubernetes.io/name. */}}
{{- define "ecr-refresh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
The objects of one file under deploy/, as YAML {items: [...]}: deploy/'s namespace kube-system
becomes the release namespace (in `namespace:` fields and the ServiceAccount's user name the
policies match), and awsecr-cred the Secret name value. Arguments: (list $ "path/in/deploy").
*/}}
{{- define "ecr-refresh.file" -}}
{{- $ := index . 0 }}
{{- $path := index . 1 }}
{{- $text := $.Files.Get (printf "files/deploy/%s" $path) }}
{{- if not $text }}
{{- fail (printf "deploy/%s is missing or empty (the chart reads deploy/ through its link files/deploy)" $path) }}
{{- end }}
{{- $ns := $.Release.Namespace }}
{{- $text = regexReplaceAll "(?m)^([ \\t]*namespace:[ \\t]*)kube-system[ \\t]*$" $text (printf "${1}%s" $ns) }}
{{- $text = replace "system:serviceaccount:kube-system:" (printf "system:serviceaccount:%s:" $ns) $text }}
{{- $text = replace "awsecr-cred" $.Values.secretName $text }}
{{- $items := list }}
{{- range $doc := regexSplit "(?m)^---\\s*$" $text -1 }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "deploy/%s: %s" $path $obj.Error) }}
{{- end }}
{{- if $obj.kind }}
{{- $items = append $items $obj }}
{{- end }}
{{- end }}
{{- toYaml (dict "items" $items) }}
{{- end }}

{{/*
A kustomization (or component) under deploy/, read the way kustomize reads the parts deploy/
uses: its resources are added to $acc.items, its patches (files, strategic merge on one object
each) are merged into the object of the same kind and name. Anything else fails, so a deploy/
change the chart cannot follow is seen at once. Arguments: (list $ "dir" $acc).
*/}}
{{- define "ecr-refresh.kustomization" -}}
{{- $ := index . 0 }}
{{- $dir := index . 1 }}
{{- $acc := index . 2 }}
{{- $kpath := ternary "kustomization.yaml" (printf "%s/kustomization.yaml" $dir) (eq $dir "") }}
{{- $k := fromYaml ($.Files.Get (printf "files/deploy/%s" $kpath)) }}
{{- if or (hasKey $k "Error") (not $k.kind) }}
{{- fail (printf "deploy/%s is missing or not YAML" $kpath) }}
{{- end }}
{{- range $key, $_ := $k }}
{{- if not (has $key (list "apiVersion" "kind" "resources" "patches" "images")) }}
{{- fail (printf "deploy/%s uses `%s`, which the chart does not read: teach charts/ecr-refresh/templates/_helpers.tpl (ecr-refresh.kustomization) or add a value for it" $kpath $key) }}
{{- end }}
{{- end }}
{{- range $r := $k.resources }}
{{- $file := ternary $r (printf "%s/%s" $dir $r) (eq $dir "") }}
{{- $_ := set $acc "items" (concat $acc.items (include "ecr-refresh.file" (list $ $file) | fromYaml).items) }}
{{- end }}
{{- range $p := $k.patches }}
{{- if or (not $p.path) (ne (len $p) 1) }}
{{- fail (printf "deploy/%s: a patch other than `- path: FILE` (%s), which the chart does not apply: teach charts/ecr-refresh/templates/_helpers.tpl" $kpath (toJson $p)) }}
{{- end }}
{{- $file := ternary $p.path (printf "%s/%s" $dir $p.path) (eq $dir "") }}
{{- range $patch := (include "ecr-refresh.file" (list $ $file) | fromYaml).items }}
{{- $hit := false }}
{{- range $obj := $acc.items }}
{{- if and (eq $obj.kind $patch.kind) (eq $obj.metadata.name $patch.metadata.name) }}
{{- $_ := mergeOverwrite $obj $patch }}
{{- $hit = true }}
{{- end }}
{{- end }}
{{- if not $hit }}
{{- fail (printf "deploy/%s patches %s %s, which no file the chart reads holds" $file $patch.kind $patch.metadata.name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The image reference: the digest wins over the tag. */}}
{{- define "ecr-refresh.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}
{{- end }}
