/// What kiln runs in the guest so that no private key or credential file becomes part of an
/// image by accident (the seeds' "leaked private keys in public images").
///
/// Every regular file whose inode changed since the build VM booted (ctime, against the
/// kernel's boot time: a package's or an archive's preserved mtime does not hide a file, and
/// ctime cannot be set back) is checked for a PEM or OpenSSH private-key header, and changed
/// files are checked against well-known credential file names. What the boot itself changed is
/// scanned too: it costs little, and spares every build a round trip to mark its start. Files
/// kiln removes itself (the step script, sshd's host keys) are skipped. A hit fails the build
/// unless it matches a shell pattern listed under the template's `allow_secrets:`.
enum SecretScan {
    /// The scan's exit status when it found something not allowed.
    static let foundStatus: Int32 = 3

    /// Reads the allowed patterns from `KILN_ALLOW_SECRETS` (one per line).
    static let script = """
        changed=/run/kiln-changed hits=/run/kiln-hits
        booted=$(awk '$1 == "btime" { print $2 }' /proc/stat)
        find / -xdev \\( -path /tmp/kiln-step.sh -o -path '/etc/ssh/ssh_host_*' \\) -prune -o \\
          -type f -newerct "@$booted" -print0 2>/dev/null > "$changed" || true
        : > "$hits"
        xargs -0 -r grep -l -s -I -E -e '-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----' < "$changed" |
          sed 's/^/private key|/' >> "$hits" || true
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
        found=0 checked=$(tr -cd '\\0' < "$changed" | wc -c)
        while IFS='|' read -r kind path; do
          if allowed "$path"; then
            echo "allowed by allow_secrets: $kind $path"
          else
            echo "found a $kind: $path"
            found=1
          fi
        done < "$hits"
        rm -f "$changed" "$hits"
        echo "scanned $checked changed files"
        [ "$found" = 0 ] || exit \(foundStatus)
        """
}
