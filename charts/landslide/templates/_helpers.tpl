{{/* Names: KubeRay derives pod and service names from RayJob/RayService names (at most 47 characters). */}}
{{- define "landslide.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 32 | trimSuffix "-" -}}
{{- end -}}

{{- define "landslide.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 32 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 32 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 32 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "landslide.selectorLabels" -}}
app.kubernetes.io/name: {{ include "landslide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "landslide.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "landslide.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: landslide
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "landslide.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "landslide.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "landslide.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The API token Secret of the endpoint: the user's, or the one this chart generates. */}}
{{- define "landslide.apiTokenSecret" -}}
{{- default (printf "%s-api-token" (include "landslide.fullname" .)) .Values.serve.auth.existingSecret -}}
{{- end -}}

{{/* The environment variable that carries the endpoint's bearer token (serve/app.py reads its name). */}}
{{- define "landslide.apiTokenEnv" -}}LANDSLIDE_API_TOKEN{{- end -}}

{{/* The cluster values of one component: the shared `cluster` block overridden by `<component>.cluster`. */}}
{{- define "landslide.clusterValues" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $override := index $root.Values $component "cluster" | default dict -}}
{{- toYaml (mustMergeOverwrite (deepCopy $root.Values.cluster) (deepCopy $override)) -}}
{{- end -}}

{{/*
A Ray container (head or worker). Args: dict with root, c (cluster values), group ("head" or a worker group),
isHead, component, configMap (name or ""), ports (bool: head ports).
*/}}
{{- define "landslide.rayContainer" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $g := .group -}}
- name: {{ ternary "ray-head" "ray-worker" .isHead }}
  image: {{ include "landslide.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  {{- $resources := deepCopy ($g.resources | default dict) }}
  {{- if and (not .isHead) (gt (int ($g.gpus | default 0)) 0) }}
  {{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" (int $g.gpus)) ($resources.requests | default dict)) }}
  {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" (int $g.gpus)) ($resources.limits | default dict)) }}
  {{- end }}
  resources:
    {{- toYaml $resources | nindent 4 }}
  securityContext:
    {{- toYaml $c.securityContext | nindent 4 }}
  env:
    - name: PYTHONDONTWRITEBYTECODE
      value: "1"
    - name: PYTHONUNBUFFERED
      value: "1"
    - name: HOME
      value: /tmp/home
    - name: XDG_CACHE_HOME
      value: /tmp/cache
    - name: MPLCONFIGDIR
      value: /tmp/cache/matplotlib
    - name: LANDSLIDE_COMPONENT
      value: {{ .component }}
    {{- if and (eq .component "serve") $root.Values.serve.auth.enabled }}
    - name: {{ include "landslide.apiTokenEnv" $root }}
      valueFrom:
        secretKeyRef:
          name: {{ include "landslide.apiTokenSecret" $root }}
          key: {{ $root.Values.serve.auth.secretKey }}
    {{- end }}
    {{- with $c.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $c.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .isHead }}
  ports:
    - {name: gcs-server, containerPort: 6379}
    - {name: dashboard, containerPort: 8265}
    - {name: metrics, containerPort: 8080}
    {{- if eq .component "serve" }}
    - {name: serve, containerPort: 8000}
    {{- end }}
  {{- else if eq .component "serve" }}
  ports:
    - {name: metrics, containerPort: 8080}
    - {name: serve, containerPort: 8000}
  {{- end }}
  lifecycle:
    preStop:
      exec:
        command: ["/bin/sh", "-c", "ray stop"]
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    - {name: shm, mountPath: /dev/shm}
    {{- if and .isHead .configMap }}
    - {name: config, mountPath: /etc/landslide, readOnly: true}
    {{- end }}
    {{- with $c.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The pod template of a head or worker group. Same args as landslide.rayContainer. */}}
{{- define "landslide.podTemplate" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $g := .group -}}
metadata:
  labels:
    {{- include "landslide.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $c.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $c.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "landslide.serviceAccountName" $root }}
  {{- /* The autoscaler sidecar on the head scales worker pods through the Kubernetes API (KubeRay binds its
  Role to this ServiceAccount), so the head gets a token when autoscaling is on; no other Ray pod does. */}}
  automountServiceAccountToken: {{ or $root.Values.serviceAccount.automountServiceAccountToken (and .isHead $c.autoscaling.enabled) }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $c.podSecurityContext | nindent 4 }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := $g.tolerations | default list }}
  {{- if and (not .isHead) (gt (int ($g.gpus | default 0)) 0) }}
  {{- $tolerations = concat $tolerations ($c.gpuTolerations | default list) }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    {{- include "landslide.rayContainer" . | nindent 4 }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $c.tmpSizeLimit }}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $c.shmSizeLimit }}
    {{- if and .isHead .configMap }}
    - name: config
      configMap:
        name: {{ .configMap }}
    {{- end }}
    {{- with $c.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* A RayCluster spec (rayClusterSpec of a RayJob, rayClusterConfig of a RayService). Args: root, component, configMap. */}}
{{- define "landslide.rayClusterSpec" -}}
{{- $root := .root -}}
{{- $c := include "landslide.clusterValues" (list $root .component) | fromYaml -}}
{{- $args := dict "root" $root "c" $c "component" .component "configMap" .configMap -}}
rayVersion: {{ $root.Values.rayVersion | quote }}
{{- if eq $root.Values.rayAuth.mode "token" }}
authOptions:
  mode: token
{{- end }}
{{- if $c.autoscaling.enabled }}
enableInTreeAutoscaling: true
autoscalerOptions:
  upscalingMode: {{ $c.autoscaling.upscalingMode }}
  idleTimeoutSeconds: {{ $c.autoscaling.idleTimeoutSeconds }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  resources:
    {{- toYaml $c.autoscaling.resources | nindent 4 }}
  securityContext:
    {{- toYaml $c.securityContext | nindent 4 }}
{{- end }}
headGroupSpec:
  serviceType: ClusterIP
  rayStartParams:
    {{- $params := merge (dict "dashboard-host" "0.0.0.0") ($c.head.rayStartParams | default dict) }}
    {{- range $k, $v := $params }}
    {{ $k }}: {{ $v | toString | quote }}
    {{- end }}
  template:
    {{- include "landslide.podTemplate" (merge (dict "group" $c.head "isHead" true) $args) | nindent 4 }}
workerGroupSpecs:
  {{- range $g := $c.workerGroups }}
  - groupName: {{ $g.name }}
    replicas: {{ $g.replicas }}
    minReplicas: {{ $g.minReplicas }}
    maxReplicas: {{ $g.maxReplicas }}
    rayStartParams:
      {{- range $k, $v := ($g.rayStartParams | default dict) }}
      {{ $k }}: {{ $v | toString | quote }}
      {{- else }} {}
      {{- end }}
    template:
      {{- include "landslide.podTemplate" (merge (dict "group" $g "isHead" false) $args) | nindent 6 }}
  {{- end }}
{{- end -}}

{{/* The RayJob of a component (train or sweep). Args: root, component, module. */}}
{{- define "landslide.rayJob" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .component -}}
{{- $fullname := include "landslide.fullname" $root -}}
{{- $configYaml := toYaml $v.config -}}
{{- $entry := list "python" "-m" .module "--config" "/etc/landslide/config.yaml" -}}
{{- if and (eq .component "train") $v.storagePath }}{{ $entry = concat $entry (list "--storage-path" $v.storagePath) }}{{ end -}}
{{- $entry = concat $entry ($v.extraArgs | default list) -}}
{{- $cluster := include "landslide.clusterValues" (list $root .component) -}}
{{- $digest := printf "%s\n%s\n%s\n%s\n%s" $configYaml (join " " $entry) (include "landslide.image" $root) $cluster (toYaml $v.job) | sha256sum | trunc 6 -}}
{{- $name := printf "%s-%s-%s" $fullname .component $digest -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  labels:
    {{- include "landslide.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
data:
  config.yaml: |
    {{- $configYaml | nindent 4 }}
---
apiVersion: ray.io/v1
kind: RayJob
metadata:
  # The name carries a digest of the config, entrypoint, image, cluster and job settings: a changed job is a new
  # RayJob (a submitted RayJob's spec cannot change), an unchanged `helm upgrade` leaves the running one alone.
  name: {{ $name }}
  labels:
    {{- include "landslide.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  entrypoint: {{ $entry | join " " | quote }}
  shutdownAfterJobFinishes: {{ $v.job.shutdownAfterJobFinishes }}
  ttlSecondsAfterFinished: {{ $v.job.ttlSecondsAfterFinished }}
  {{- if $v.job.activeDeadlineSeconds }}
  activeDeadlineSeconds: {{ $v.job.activeDeadlineSeconds }}
  {{- end }}
  backoffLimit: {{ $v.job.backoffLimit }}
  submitterConfig:
    backoffLimit: {{ $v.job.submitterBackoffLimit }}
  {{- $c := $cluster | fromYaml }}
  submitterPodTemplate:
    metadata:
      labels:
        {{- include "landslide.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}-submitter
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "landslide.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $c.podSecurityContext | nindent 8 }}
      containers:
        - name: ray-job-submitter
          image: {{ include "landslide.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          env:
            - {name: HOME, value: /tmp/home}
            - {name: PYTHONDONTWRITEBYTECODE, value: "1"}
          resources:
            {{- toYaml $c.submitter.resources | nindent 12 }}
          securityContext:
            {{- toYaml $c.securityContext | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 1Gi
  rayClusterSpec:
    {{- include "landslide.rayClusterSpec" (dict "root" $root "component" .component "configMap" $name) | nindent 4 }}
{{- end -}}
