#!/usr/bin/env bash
# Makes the local IVS's looping test stream: an 8 s clip (test pattern with a running clock, a 1 kHz
# tone), H.264 Main 3.1 + AAC-LC in MPEG-TS, cut into 4 segments of 2 s (a keyframe at each), in two
# renditions. The segments are committed (about 0.6 MB) so that nothing but this script needs ffmpeg;
# .ci/run runs it again into a temporary directory to prove it still works.
#
#   assets/clip/make-clip.sh [OUT_DIR]    # default: the directory of this script
set -euo pipefail
out=${1:-$(dirname "$0")}
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
seconds=8
segment=2
fps=30
render() { # name width height video_kbps
  local dir="$out/$1"
  mkdir -p "$dir"
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=$2x$3:rate=$fps:duration=$seconds" \
    -f lavfi -i "sine=frequency=1000:sample_rate=48000:duration=$seconds" \
    -c:v libx264 -profile:v main -level:v 3.1 -pix_fmt yuv420p -preset veryfast -threads 1 \
    -b:v "$4k" -maxrate "$4k" -bufsize "$(($4 * 2))k" \
    -g $((fps * segment)) -keyint_min $((fps * segment)) -sc_threshold 0 \
    -c:a aac -b:a 48k -ac 2 \
    -f hls -hls_time "$segment" -hls_list_size 0 -hls_segment_type mpegts \
    -hls_segment_filename "$dir/%d.ts" "$dir/index.m3u8"
  rm -f "$dir/index.m3u8"
}
render 720p30 1280 720 400
render 360p30 640 360 150
ls -l "$out"/*/
