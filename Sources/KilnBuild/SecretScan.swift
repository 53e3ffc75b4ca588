import KilnCore
import KilnModel

/// What kiln runs in the guest so that no private key or credential file becomes part of an
/// image by accident (the seeds' "leaked private keys in public images"), where kiln cannot
/// read the machine's disk itself (``DiskInspection`` does the same there, faster).
///
/// Every regular file whose inode changed since the build VM booted (ctime, against the
/// kernel's boot time: a package's or an archive's preserved mtime does not hide a file, and
/// ctime cannot be set back) is checked for a PEM or OpenSSH private-key header, and changed
/// files are checked against well-known credential file names. What the boot itself changed is
/// scanned too: it costs little, and spares every build a round trip to mark its start. Files
/// kiln removes itself (the step script, sshd's host keys) are skipped. A hit fails the build
/// unless it matches a shell pattern listed under the template's `allow_secrets:`.
enum SecretScan {
    /// What a build that found something not allowed fails with (the findings are logged).
    static func foundError(_ template: Template) -> KilnError {
        KilnError(
            .buildFailed,
            "private keys or credential files would be in the image (listed below): remove them in a step, or list their paths under allow_secrets: in \(template.file)"
        )
    }

    /// The scan's exit status when it found something not allowed.
    static let foundStatus: Int32 = 3

    /// The scan's exit status when it could not scan (a tool missing or failing, or its own
    /// probe not found): the build fails; a scan that cannot run never passes.
    static let brokenStatus: Int32 = 4

    /// Reads the allowed patterns from `KILN_ALLOW_SECRETS` (one per line); `KILN_SCAN_ROOT`
    /// scans a directory instead of `/` (for its tests).
    ///
    /// It proves itself on every run: a probe file holding a private-key header is written at
    /// the top of the root filesystem (the one the walk stays on) before the walk and must
    /// come out as a hit, so a `find` without `-newerct`, a `grep`
    /// without an option or a walk that failed cannot pass as "nothing found". Without GNU
    /// find's `-newerct` (busybox), every file is scanned rather than those changed since boot.
    static let script = """
        root=${KILN_SCAN_ROOT:-}
        changed=/run/kiln-changed-$$ hits=/run/kiln-hits-$$ errors=/run/kiln-scan-errors-$$
        probe=$root/.kiln-scan-probe-$$
        broken() { echo "the secret scan cannot run here: $1" >&2; rm -f "$probe" "$changed" "$hits"; exit \(brokenStatus); }
        booted=$(awk '$1 == "btime" { print $2 }' /proc/stat) || broken "cannot read the boot time from /proc/stat"
        [ -n "$booted" ] || broken "cannot read the boot time from /proc/stat"
        printf '%s\\n' '-----BEGIN PRIVATE KEY-----' > "$probe" || broken "cannot write $probe"
        status=0
        if find "${root:-/}" -maxdepth 0 -newerct "@$booted" > /dev/null 2>&1; then
          scope="changed files"
          find "${root:-/}" -xdev \\( -path "$root/tmp/kiln-step.sh" -o -path "$root/etc/ssh/ssh_host_*" \\) -prune -o \\
            -type f -newerct "@$booted" -print0 > "$changed" 2> "$errors" || status=$?
        else
          scope="files (this guest's find has no -newerct: every file is scanned)"
          find "${root:-/}" -xdev \\( -path "$root/tmp/kiln-step.sh" -o -path "$root/etc/ssh/ssh_host_*" \\) -prune -o \\
            -type f -print0 > "$changed" 2> "$errors" || status=$?
        fi
        [ "$status" = 0 ] || broken "find exited $status: $(head -c 300 "$errors")"
        binary=-I
        printf 'x\\n' | grep -l -s -I -e x > /dev/null 2>&1 || binary=
        : > "$hits"
        status=0
        xargs -0 -r grep -l -s $binary -E -e '-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----' < "$changed" > "$hits.keys" || status=$?
        # 0: hits; 123: some file had none (or could not be read): both are a finished walk.
        [ "$status" = 0 ] || [ "$status" = 123 ] || broken "grep (through xargs) exited $status"
        grep -qxF "$probe" "$hits.keys" || broken "its probe $probe was not found: find or grep does not work as the scan needs"
        grep -vxF "$probe" "$hits.keys" | sed 's/^/private key|/' >> "$hits" || true
        rm -f "$probe" "$hits.keys" "$errors"
        tr '\\0' '\\n' < "$changed" |
          grep -E '/\\.(aws/credentials|docker/config\\.json|netrc|git-credentials|pgpass|kube/config|ssh/id_(rsa|dsa|ecdsa|ed25519))$' |
          sed 's/^/credential file|/' >> "$hits" || true
        allowed() {
          set -f; old=$IFS; IFS='
        '
          for pattern in $KILN_ALLOW_SECRETS; do
            case "$1" in $pattern) IFS=$old; set +f; return 0 ;; esac
          done
          IFS=$old; set +f; return 1
        }
        found=0 checked=$(( $(tr -cd '\\0' < "$changed" | wc -c) - 1 ))
        while IFS='|' read -r kind path; do
          if allowed "$path"; then
            echo "allowed by allow_secrets: $kind $path"
          else
            echo "found a $kind: $path"
            found=1
          fi
        done < "$hits"
        rm -f "$changed" "$hits"
        echo "scanned $checked $scope"
        [ "$found" = 0 ] || exit \(foundStatus)
        """
}
