# An installer-driven template: Debian's netinst ISO answered by a preseed file, then Ansible.
variable "iso_checksum" {
  type    = string
  default = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
}

source "qemu" "netinst" {
  iso_url          = "debian-12.8.0-amd64-netinst.iso"
  iso_checksum     = var.iso_checksum
  http_directory   = "http"
  boot_command     = ["<esc><wait>auto preseed/url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"]
  disk_size        = "10G"
  memory           = 2048
  ssh_username     = "root"
  ssh_password     = "packer"
  shutdown_command = "shutdown -P now"
  vm_name          = "netinst-${formatdate("YYYYMMDD", timestamp())}.qcow2"
}

build {
  sources = ["source.qemu.netinst"]

  provisioner "ansible" {
    playbook_file   = "playbook/site.yml"
    extra_arguments = ["--extra-vars", "greeting=hello port=8080", "-vv"]
  }

  provisioner "shell" {
    only   = ["amazon-ebs.other"]
    inline = ["echo never here"]
  }

  provisioner "breakpoint" {
    note = "look around"
  }
}
